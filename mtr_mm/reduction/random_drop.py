"""Random token dropping: the floor every scored method has to beat."""
import numbers
from typing import Optional

import torch
from torch import Tensor

from ._matching import (ascending_non_cls, check_r, identity_plan, nearest_survivor, num_non_cls,
                        sort_by_position, survivors)
from .base import REDUCERS, BaseReducer
from .state import ReductionPlan, TokenState

_SEED_STRIDE = 1_000_003   # mixes the token count into the seed (prime, > any sequence length)


@REDUCERS.register_module(name='random')
class RandomReducer(BaseReducer):
    """Drop ``r`` random non-cls tokens (pruning, no merge); the survivors keep their order.

    Reproducibility and batch invariance: the keys of L tokens come from a CPU
    ``torch.Generator`` seeded with ``seed + 1_000_003 * L`` (L = current token count; the layer
    index is not used; drawn once per L and device), ONE random key per token index, shared by every image of the
    batch; each image drops its r lowest-keyed non-cls tokens. The choice therefore depends only on
    (seed, L, the image's own class-token index): the same on every run and device, and the same
    for an image planned alone or at any place in a batch. The price is that the images of a batch
    drop the same token indices (unless their class tokens sit at different indices); a per-image
    stream that is also batch-invariant is impossible without a per-image identity.

    For dense restoration each dropped token is represented by the non-cls survivor nearest to it on the
    patch grid (ties: the earlier one).

    Args:
        seed (int): base seed. Default 0.

    Limit: ``r <= N - 1`` (N = non-cls tokens; one non-cls token must survive).
    """
    preserves_order = True

    def __init__(self, seed: int = 0):
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
            raise ValueError(f'random: seed must be a non-negative int, got {seed!r}')
        self.seed = int(seed)
        self._device_keys = {}  # (L, device) -> keys there: drawn once, so a CUDA-graph capture copies nothing

    def max_r(self, num_tokens: int, has_cls: bool) -> int:
        return max(num_non_cls(num_tokens, has_cls) - 1, 0)

    def keys(self, num_tokens: int) -> Tensor:
        """The (L,) random keys of one plan call (CPU, fp32)."""
        generator = torch.Generator(device='cpu')
        generator.manual_seed(self.seed + _SEED_STRIDE * num_tokens)
        return torch.rand(num_tokens, generator=generator)

    def keys_on(self, num_tokens: int, device: torch.device) -> Tensor:
        """``keys(num_tokens)`` on ``device``, copied there once per (L, device)."""
        cached = self._device_keys.get((num_tokens, device))
        if cached is None:
            cached = self._device_keys[(num_tokens, device)] = self.keys(num_tokens).to(device)
        return cached

    def plan(self, state: TokenState, r: int, score: Optional[Tensor] = None) -> ReductionPlan:
        length = state.num_tokens
        has_cls = state.cls_index is not None
        r = check_r('random', r, self.max_r(length, has_cls), length, has_cls,
                    'one non-cls token must survive')
        if r == 0:
            return identity_plan(state)
        cls_mask = state.cls_mask()
        keys = self.keys_on(length, state.positions.device).expand(cls_mask.shape)
        source = ascending_non_cls(keys, cls_mask)[:, :r]
        keep = sort_by_position(state.positions, survivors(length, source))
        target = nearest_survivor(state, keep, source)
        return ReductionPlan(keep=keep, source=source, target=target, merge=False)

    def overhead_flops(self, num_tokens: int, r: int, embed_dims: int) -> float:
        """MACs: 0 (no scores, no similarity; drawing keys and sorting count 0)."""
        return 0.0
