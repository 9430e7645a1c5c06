"""ToMe (Bolya et al., ICLR 2023): bipartite soft matching, training-free, NOT order-preserving."""
from typing import Optional, Tuple

import torch
from torch import Tensor

from ._matching import best_edges, check_r, cosine_similarity, identity_plan
from .base import REDUCERS, BaseReducer
from .state import ReductionPlan, TokenState, gather_tokens


def bipartite_soft_matching(state: TokenState, r: int) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """ToMe's matching on the current sequence of every image.

    Set A = tokens at even current indices, set B = odd ones; the class token stays in the set its
    index falls in but is protected (its similarities are -inf: it is never a source nor a target).
    Each A token's most cosine-similar B token (hidden features) is its edge; the r A tokens with the
    most similar edges merge into their B partners.

    Returns (source (B, r), target (B, r), unmerged A tokens (B, |A| - r) in their current order,
    B tokens (B, |B|) in their current order), all as current token indices.
    """
    batch, length = state.positions.shape
    device = state.positions.device
    set_a = torch.arange(0, length, 2, device=device).expand(batch, -1)
    set_b = torch.arange(1, length, 2, device=device).expand(batch, -1)
    similarity = cosine_similarity(gather_tokens(state.hidden, set_a), gather_tokens(state.hidden, set_b))
    if state.cls_index is not None:
        cls_mask = state.cls_mask()
        blocked = cls_mask.gather(1, set_a)[:, :, None] | cls_mask.gather(1, set_b)[:, None, :]
        similarity = similarity.masked_fill(blocked, -torch.inf)
    rows, cols = best_edges(similarity, r)
    merged = torch.zeros(set_a.shape, dtype=torch.uint8, device=device).scatter_(1, rows, 1)
    unmerged_rows = torch.argsort(merged, dim=1, stable=True)[:, :set_a.shape[1] - r]
    return set_a.gather(1, rows), set_b.gather(1, cols), set_a.gather(1, unmerged_rows), set_b


@REDUCERS.register_module(name='tome')
class ToMeReducer(BaseReducer):
    """ToMe's bipartite soft matching on the mixer output (hidden), size-weighted merge.

    Set A = even current indices, B = odd (the class token keeps its place in its set and is
    protected); each A token's most cosine-similar B token is its edge; the r highest-similarity
    edges are merged (size-weighted average into the B token). Output order is ToMe's
    ``[unmerged A (in their order), B (in their order)]``: spatial order is NOT preserved, which is
    exactly what this baseline is there to show on a sequence model. Ties: lower index first.

    No knobs.

    Limit: ``r <= ceil(L/2) - 1`` with a class token (it may sit in A), ``r <= ceil(L/2)`` without,
    and r = 0 when B holds no non-cls token (L < 4 with a class token, L < 2 without). The limit
    is the worst case over class-token positions, so it does not depend on the batch.
    """
    preserves_order = False
    _name = 'tome'

    def max_r(self, num_tokens: int, has_cls: bool) -> int:
        size_a, size_b = (num_tokens + 1) // 2, num_tokens // 2
        if size_b - int(has_cls) < 1:
            return 0
        return max(size_a - int(has_cls), 0)

    def _check(self, state: TokenState, r: int) -> int:
        length = state.num_tokens
        has_cls = state.cls_index is not None
        return check_r(self._name, r, self.max_r(length, has_cls),
                length, has_cls, 'only tokens of set A (even indices, class token excluded) can be '
                'merged into set B, which needs a non-cls token')

    def plan(self, state: TokenState, r: int, score: Optional[Tensor] = None) -> ReductionPlan:
        r = self._check(state, r)
        if r == 0:
            return identity_plan(state)
        source, target, unmerged_a, set_b = bipartite_soft_matching(state, r)
        keep = torch.cat([unmerged_a, set_b], dim=1)
        return ReductionPlan(keep=keep, source=source, target=target, merge=True)

    def overhead_flops(self, num_tokens: int, r: int, embed_dims: int) -> float:
        """MACs: ``L·C`` (normalising every token) ``+ ceil(L/2)·floor(L/2)·C`` (A x B dot
        products); sorting counts 0."""
        if r <= 0:
            return 0.0
        size_a, size_b = (num_tokens + 1) // 2, num_tokens // 2
        return float(num_tokens * embed_dims + size_a * size_b * embed_dims)
