"""Reduction schedules: at which layers, and how many tokens leave there.

- ``explicit``: ``layers`` plus ``r`` (tokens removed at each, an int or one per layer) or
  ``keep_ratio`` (fraction of the current non-cls tokens kept, a float or one per layer);
- ``target``: a FLOPs reduction (e.g. 0.4 = 40 % fewer FLOPs than the unreduced model, one-direction
  convention, reduction overhead included) over ``layers``, solved into r per layer with the
  analytic counter: uniform r, then single tokens added at the earliest layers, closest to target.

Reduction "at layer i" happens after block i runs, so layers i+1.. see fewer tokens.
"""
from dataclasses import dataclass
from typing import List, Optional, Sequence, Union

from .flops import VimDims, vim_flops

# Fewest non-cls tokens a schedule may leave: reducers need some tokens to match against.
MIN_TOKENS_LEFT = 4


def _check_number(value, name: str, whole: bool = False):
    """Refuse what a command line can hand over by mistake: text, or a fraction where a count is meant
    (``int()`` would silently truncate ``layers=[6.5, 9]``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (whole and int(value) != value):
        kind = 'a whole number' if whole else 'a number'
        raise ValueError(f'schedule: {name} must be {kind}, got {value!r}')


def _per_layer(value, layers: Sequence[int], name: str) -> list:
    if isinstance(value, (list, tuple)):
        if len(value) != len(layers):
            raise ValueError(f'schedule: {name} has {len(value)} entries for {len(layers)} layers; give one '
                             'per layer or a single value')
        return list(value)
    return [value] * len(layers)


@dataclass
class Schedule:
    layers: Sequence[int]
    r: Union[int, Sequence[int], None] = None
    keep_ratio: Union[float, Sequence[float], None] = None
    flops_reduction: Optional[float] = None

    def __post_init__(self):
        for i in self.layers:
            _check_number(i, f'layers entry {i!r} (in {list(self.layers)})', whole=True)
        self.layers = sorted(int(i) for i in self.layers)
        if len(set(self.layers)) != len(self.layers):
            raise ValueError(f'schedule: layers {self.layers} repeat a layer')
        given = [k for k in ('r', 'keep_ratio', 'flops_reduction') if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f'schedule: give exactly one of r, keep_ratio, flops_reduction (got {given or "none"})')
        for ratio in _per_layer(self.keep_ratio, self.layers, 'keep_ratio') if self.keep_ratio is not None else []:
            _check_number(ratio, 'keep_ratio')
            if not 0 < ratio <= 1:
                raise ValueError(f'schedule: keep_ratio {ratio} must be in (0, 1] (1 keeps every token)')
        for r in _per_layer(self.r, self.layers, 'r') if self.r is not None else []:
            _check_number(r, 'r')
            if int(r) != r or r < 0:
                raise ValueError(f'schedule: r={r} must be a whole number of tokens >= 0')
        if self.flops_reduction is not None:
            _check_number(self.flops_reduction, 'flops_reduction')
            if not 0 <= self.flops_reduction < 1:
                raise ValueError(f'schedule: flops_reduction {self.flops_reduction} must be in [0, 1) '
                                 '(e.g. 0.4 for 40 % fewer FLOPs)')

    def removed(self, dims: VimDims, num_patches: int, num_tokens: int, has_cls: bool, reducer=None,
                reactivate_at: Optional[int] = None) -> List[int]:
        """Tokens removed after each of the ``dims.depth`` layers for this input size (a FLOPs target
        counts the layers from ``reactivate_at`` on at full length)."""
        bad = [i for i in self.layers if not 0 <= i < dims.depth - 1]
        if bad:
            raise ValueError(f'schedule: layers {bad} out of range; a reduction after layer i needs a later '
                             f'layer, so layers must be in [0, {dims.depth - 2}] for depth {dims.depth}')
        candidates = num_tokens - int(has_cls)
        if self.flops_reduction is not None:
            per_layer = solve_target(self.flops_reduction, self.layers, dims, num_patches, num_tokens,
                                     candidates, reducer, reactivate_at)
        elif self.r is not None:
            per_layer = [int(r) for r in _per_layer(self.r, self.layers, 'r')]
        else:
            per_layer = []
            left = candidates
            for ratio in _per_layer(self.keep_ratio, self.layers, 'keep_ratio'):
                per_layer.append(left - round(left * ratio))
                left -= per_layer[-1]
        if candidates - sum(per_layer) < MIN_TOKENS_LEFT:
            raise ValueError(f'schedule removes {sum(per_layer)} of {candidates} tokens; at most '
                             f'{candidates - MIN_TOKENS_LEFT} can go at this input size (lower r / raise '
                             'keep_ratio, or use a larger input)')
        removed = [0] * dims.depth
        for layer, r in zip(self.layers, per_layer):
            removed[layer] = r
        return removed


def solve_target(target: float, layers: Sequence[int], dims: VimDims, num_patches: int, num_tokens: int,
                 candidates: int, reducer=None, reactivate_at: Optional[int] = None) -> List[int]:
    """r per reducing layer whose FLOPs reduction is closest to ``target``.

    A uniform request u is capped per layer by what the method can remove there
    (``reducer.max_r``, e.g. ToMe at most half the tokens) and by the token budget, so the excess
    falls to later layers; the largest u not above target is found by bisection, then single
    tokens are added at the earliest layers that can take them.
    """
    full = vim_flops(dims, num_patches, num_tokens).total
    has_cls = candidates < num_tokens
    budget = candidates - MIN_TOKENS_LEFT

    def capped(requests):
        per_layer, tokens, left = [], num_tokens, budget
        for want in requests:
            limit = reducer.max_r(tokens, has_cls) if reducer is not None else want
            per_layer.append(max(min(want, limit, left), 0))
            tokens, left = tokens - per_layer[-1], left - per_layer[-1]
        return per_layer

    def achieved(per_layer):
        removed = [0] * dims.depth
        for layer, r in zip(layers, per_layer):
            removed[layer] = r
        return 1 - vim_flops(dims, num_patches, num_tokens, removed, reducer, reactivate_at=reactivate_at).total / full

    most = achieved(capped([candidates] * len(layers)))
    if most < target:
        raise ValueError(f'schedule: a {target:.0%} FLOPs reduction is out of reach with layers {list(layers)} '
                         f'at {num_tokens} tokens (at most {most:.1%}); reduce earlier or at more layers')
    low, high = 0, candidates  # largest uniform request not above target
    while low < high:
        mid = (low + high + 1) // 2
        low, high = (mid, high) if achieved(capped([mid] * len(layers))) <= target else (low, mid - 1)
    per_layer = capped([low] * len(layers))
    for i in range(len(layers)):  # one more token at the earliest layers, while still <= target
        trial = capped(per_layer[:i] + [per_layer[i] + 1] + per_layer[i + 1:])
        if trial == per_layer:
            continue
        if achieved(trial) > target:
            if abs(achieved(trial) - target) < abs(achieved(per_layer) - target):
                per_layer = trial
            break
        per_layer = trial
    return per_layer
