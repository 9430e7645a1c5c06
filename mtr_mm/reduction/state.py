"""The token state carried between Vim blocks, and the index operations every reducer shares.

A reducer never edits tensors itself: it returns a :class:`ReductionPlan` (which tokens survive, in
which order, and where each removed token goes) and :func:`apply_plan` applies the SAME index
operations to the hidden and the residual stream, the bookkeeping (original positions, sizes, cls
index) and the per-image map from every original position to its current representative token,
from which dense heads get full-resolution maps back (see ``restore.py``).
"""
from dataclasses import dataclass, field, replace
from typing import List, Optional

import torch
from torch import Tensor


@dataclass
class ReductionPlan:
    """One reduction step, expressed in the indices of the tokens BEFORE the step.

    keep:   (B, L') survivors, in their new order.
    source: (B, r) removed tokens.
    target: (B, r) the surviving token each removed token goes to (for merging methods it absorbs
            it; for pruning methods it only stands for it when a dense map is restored).
    merge:  average each source into its target (weights below) instead of dropping it.
    weights: (B, L) per-token merge weights; None means token sizes (ToMe's size-weighted mean).
    hidden_pruned: (B, r) bool or None: sources pruned from the hidden stream instead of merged
            there (their residual still merges; ToR-SSM's hybrid reduction).
    """
    keep: Tensor
    source: Tensor
    target: Tensor
    merge: bool = True
    weights: Optional[Tensor] = None
    hidden_pruned: Optional[Tensor] = None


@dataclass
class RemovalRecord:
    """What dense restoration needs from one step: which original positions left, and their
    similarity to the survivors at that moment (only filled for ``similarity`` restoration)."""
    positions: Tensor                    # (B, r) own original positions of the removed tokens
    survivor_positions: Tensor           # (B, L') own original positions of the survivors
    weights: Optional[Tensor] = None     # (B, r, L') softmax similarity weights


@dataclass
class TokenState:
    hidden: Tensor                       # (B, L, C) mixer output of the last block
    residual: Optional[Tensor]           # (B, L, C) fp32 residual stream; None before block 0
    positions: Tensor                    # (B, L) original sequence index of each token
    sizes: Tensor                        # (B, L) number of original tokens each token stands for
    source_map: Tensor                   # (B, L0) current index of the token representing position p
    cls_index: Optional[Tensor] = None   # (B,) current index of the class token, None without one
    cls_position: Optional[int] = None   # original sequence index of the class token
    grid_size: tuple = (0, 0)            # patch grid (H, W) of the original sequence
    # Filled only when a dense restoration mode asks for it (see restore.py).
    record_stale: bool = False
    record_similarity: bool = False
    stale_hidden: Optional[Tensor] = None    # (B, L0, C) value of each position when it was removed
    stale_residual: Optional[Tensor] = None
    removals: List[RemovalRecord] = field(default_factory=list)

    @classmethod
    def create(cls, hidden: Tensor, cls_position: Optional[int], grid_size: tuple,
               record_stale: bool = False, record_similarity: bool = False) -> 'TokenState':
        batch, length, _ = hidden.shape
        positions = torch.arange(length, device=hidden.device).expand(batch, length)
        cls_index = None
        if cls_position is not None:
            cls_index = torch.full((batch, ), cls_position, dtype=torch.long, device=hidden.device)
        return cls(
            hidden=hidden, residual=None, positions=positions,
            sizes=torch.ones(batch, length, dtype=torch.float32, device=hidden.device),
            source_map=positions, cls_index=cls_index, cls_position=cls_position,
            grid_size=tuple(grid_size), record_stale=record_stale,
            record_similarity=record_similarity)

    @property
    def num_tokens(self) -> int:
        return self.hidden.shape[1]

    @property
    def num_original(self) -> int:
        return self.source_map.shape[1]

    def cls_mask(self) -> Tensor:
        """(B, L) bool, True at the class token (all False without one)."""
        mask = torch.zeros(self.positions.shape, dtype=torch.bool, device=self.positions.device)
        if self.cls_index is not None:
            mask.scatter_(1, self.cls_index[:, None], True)
        return mask

    def read_cls(self, tokens: Tensor) -> Tensor:
        """Gather the class token of each image from (B, L, C) tokens at its tracked index."""
        index = self.cls_index[:, None, None].expand(-1, 1, tokens.shape[-1])
        return tokens.gather(1, index).squeeze(1)

    def removed_mask(self) -> Tensor:
        """(B, L0) True where an original position no longer has a token of its own."""
        own = self.positions.gather(1, self.source_map)
        return own != torch.arange(self.num_original, device=own.device)


def gather_tokens(x: Tensor, index: Tensor) -> Tensor:
    """x (B, L, ...) gathered along dim 1 with index (B, K)."""
    expanded = index.reshape(*index.shape, *([1] * (x.dim() - 2))).expand(-1, -1, *x.shape[2:])
    return x.gather(1, expanded)


def merge_factors(weights: Tensor, keep: Tensor, source: Tensor, new_target: Tensor):
    """For ``merge_into_survivors``: each survivor's factor w_t / D (B, L') and each source's w_s / D
    (B, r), D = w_t + sum w_s over the sources joining t. ``weights`` (B, L) per token before the
    step; ``keep``, ``source`` old indices; ``new_target`` (B, r) the targets' indices among the survivors."""
    kept_weights, source_weights = weights.gather(1, keep), weights.gather(1, source)
    total = kept_weights + torch.zeros_like(kept_weights).scatter_add_(1, new_target, source_weights)
    return kept_weights / total, source_weights / total.gather(1, new_target)


def merge_into_survivors(kept: Tensor, sources: Tensor, factors, new_target: Tensor) -> Tensor:
    """Survivors ``kept`` (B, L', C) with each row of ``sources`` (B, r, C) averaged into its target
    (``new_target``, indices into ``kept``): x_t <- (w_t x_t + sum w_s x_s) / (w_t + sum w_s), computed
    in fp32 at least, as x_t * (w_t / D) + sum x_s * (w_s / D) with ``factors`` from ``merge_factors``.

    So it costs one pass over the survivors plus r scattered rows (no full-sequence numerator and
    mask), and a row that receives nothing is scaled by w / w = 1 exactly: it comes back bit-exactly."""
    keep_factor, source_factor = factors
    merged = kept * keep_factor[..., None]  # a 16-bit `kept` times fp32 factors: fp32
    contributions = (sources * source_factor[..., None]).to(merged.dtype)
    merged.scatter_add_(1, new_target[..., None].expand(-1, -1, kept.shape[-1]), contributions)
    return merged.to(kept.dtype)


def without_pruned(weights: Tensor, source: Tensor, pruned: Optional[Tensor]) -> Tensor:
    """Merge weights (B, L) with the ``pruned`` sources (B, r) weighing 0: they leave without
    changing their target."""
    if pruned is None:
        return weights
    return weights.scatter(1, source, weights.gather(1, source).masked_fill(pruned, 0))


def _record_stale(buffer: Optional[Tensor], values: Tensor, positions: Tensor, length: int) -> Tensor:
    if buffer is None:
        buffer = values.new_zeros(values.shape[0], length, values.shape[-1])
    return buffer.scatter(1, positions[..., None].expand(-1, -1, values.shape[-1]), values)


def similarity_weights(removed: Tensor, survivors: Tensor, temperature: float = 0.1) -> Tensor:
    """Softmax over survivors of the cosine similarity of each removed token: (B, r, L')."""
    removed = torch.nn.functional.normalize(removed.float(), dim=-1)
    survivors = torch.nn.functional.normalize(survivors.float(), dim=-1)
    return (removed @ survivors.transpose(1, 2) / temperature).softmax(-1)


def apply_plan(state: TokenState, plan: ReductionPlan) -> TokenState:
    """Apply one reduction step to every stream of the state, identically."""
    keep, source, target = plan.keep, plan.source, plan.target
    if source.shape[1] == 0 and keep.shape[1] == state.num_tokens:
        same_order = torch.equal(keep, torch.arange(keep.shape[1], device=keep.device).expand_as(keep))
        if same_order:
            return state

    # old index -> new index; a removed token points at its target's new index.
    batch, length = state.positions.shape
    new_index = torch.full((batch, length), -1, dtype=torch.long, device=keep.device)
    new_index.scatter_(1, keep, torch.arange(keep.shape[1], device=keep.device).expand_as(keep))
    new_index.scatter_(1, source, new_index.gather(1, target))

    # Gather the survivors first and merge into them: the merge then touches L' + r rows, not L. The
    # removed rows are gathered once, for the merge and for the dense restoration records.
    removed = source.shape[1] > 0
    kept_hidden = gather_tokens(state.hidden, keep)
    hidden, sizes = kept_hidden, state.sizes
    residual = None if state.residual is None else gather_tokens(state.residual, keep)
    removed_hidden = removed_residual = None
    if removed and (plan.merge or state.record_stale or state.record_similarity):
        removed_hidden = gather_tokens(state.hidden, source)
        if state.residual is not None and (plan.merge or state.record_stale):
            removed_residual = gather_tokens(state.residual, source)
    if plan.merge and removed:
        weights = sizes if plan.weights is None else plan.weights.float()
        new_target = new_index.gather(1, target)
        factors = merge_factors(weights, keep, source, new_target)
        hidden_factors = factors if plan.hidden_pruned is None else merge_factors(
            without_pruned(weights, source, plan.hidden_pruned), keep, source, new_target)
        hidden = merge_into_survivors(hidden, removed_hidden, hidden_factors, new_target)
        if residual is not None:
            residual = merge_into_survivors(residual, removed_residual, factors, new_target)
        sizes = sizes.scatter_add(1, target, sizes.gather(1, source))

    removed_positions = state.positions.gather(1, source)
    updates = dict(
        hidden=hidden,
        residual=residual,
        positions=state.positions.gather(1, keep),
        sizes=sizes.gather(1, keep),
        source_map=new_index.gather(1, state.source_map),
        cls_index=None if state.cls_index is None else new_index.gather(1, state.cls_index[:, None])[:, 0],
    )
    if state.record_stale and removed:
        updates['stale_hidden'] = _record_stale(state.stale_hidden, removed_hidden, removed_positions,
                                                state.num_original)
        if removed_residual is not None:
            updates['stale_residual'] = _record_stale(state.stale_residual, removed_residual, removed_positions,
                                                      state.num_original)
    if state.record_similarity and removed:
        weights = similarity_weights(removed_hidden, kept_hidden)  # the survivors as they were, before merging
        updates['removals'] = state.removals + [
            RemovalRecord(removed_positions, updates['positions'], weights)]
    return replace(state, **updates)
