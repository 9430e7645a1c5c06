"""EViT-style reduction (Liang et al., ICLR 2022) without attention: keep the tokens most similar to
the class token, fuse the rest into one token."""
from typing import Optional

import torch.nn.functional as F
from torch import Tensor

from ._matching import (ascending_non_cls, check_r, identity_plan, nearest_survivor, num_non_cls,
                        sort_by_position, survivors)
from .base import REDUCERS, BaseReducer
from .state import ReductionPlan, TokenState


@REDUCERS.register_module(name='evit')
class EViTReducer(BaseReducer):
    """Importance = cosine similarity of each token's hidden (mixer output) to the class token's
    hidden, the attention-free stand-in for EViT's cls attention. EViT is defined by the class
    token's attention, so models without a class token (the dense backbones) are refused.

    With ``fuse=True`` (default) the ``r + 1`` least important non-cls tokens are dropped and fused
    into ONE token: the score-weighted mean of the dropped tokens, weights
    ``max((1 + cos) / 2, 1e-6) * size``. EViT appends its fused token at the end of the sequence;
    here, to keep the sequence in spatial order (what a Mamba scan needs), the fused token sits at
    the position of the highest-scored dropped token (the "carrier"). In plan terms: the carrier
    survives, the other r dropped tokens are sources with target = carrier, and the merge weights
    (carrier's own included) are given explicitly. Net: exactly r tokens fewer.

    With ``fuse=False`` the r least important tokens are simply pruned (each represented, for dense
    restoration, by its nearest non-cls survivor on the patch grid).

    Survivors keep their original order in both cases.

    Args:
        fuse (bool): fuse the dropped tokens into one token (EViT's "inattentive token fusion").
            Default True.

    Limit: ``r <= N - 2`` with fuse (r + 1 tokens dropped, one non-cls token kept besides the
    fused one), ``r <= N - 1`` without; N = non-cls tokens.
    """
    preserves_order = True

    def __init__(self, fuse: bool = True):
        if not isinstance(fuse, bool):
            raise ValueError(f'evit: fuse must be True or False, got {fuse!r}')
        self.fuse = fuse

    def max_r(self, num_tokens: int, has_cls: bool) -> int:
        return max(num_non_cls(num_tokens, has_cls) - (2 if self.fuse else 1), 0)

    @staticmethod
    def scores(state: TokenState) -> Tensor:
        """(B, L) cosine similarity of every token to the class token."""
        hidden = state.hidden.float()
        reference = state.read_cls(hidden)
        return F.cosine_similarity(hidden, reference[:, None, :].expand_as(hidden), dim=-1)

    def plan(self, state: TokenState, r: int, score: Optional[Tensor] = None) -> ReductionPlan:
        length = state.num_tokens
        has_cls = state.cls_index is not None
        if not has_cls:
            raise ValueError('evit: EViT needs a class token (it keeps the tokens the class token attends to); '
                             'this model has none (dense backbones): choose another method, e.g. mtr, pumer or hsa')
        why = ('r + 1 tokens are fused into one and one other non-cls token must survive'
               if self.fuse else 'one non-cls token must survive')
        r = check_r('evit', r, self.max_r(length, has_cls), length, has_cls, why)
        if r == 0:
            return identity_plan(state)
        cls_mask = state.cls_mask()
        scores = self.scores(state)
        order = ascending_non_cls(scores, cls_mask)             # least important first, cls last
        if not self.fuse:
            source = order[:, :r]
            keep = sort_by_position(state.positions, survivors(length, source))
            target = nearest_survivor(state, keep, source)
            return ReductionPlan(keep=keep, source=source, target=target, merge=False)

        source = order[:, :r]
        carrier = order[:, r:r + 1]                              # highest-scored dropped token
        keep = sort_by_position(state.positions, order[:, r:])
        weights = ((1 + scores) / 2).clamp(min=1e-6) * state.sizes
        return ReductionPlan(keep=keep, source=source, target=carrier.expand(-1, r).contiguous(),
                             merge=True, weights=weights)

    def overhead_flops(self, num_tokens: int, r: int, embed_dims: int) -> float:
        """MACs: ``2·L·C`` (normalising every token and its dot product with the class token); the
        fusion weights are not counted; sorting counts 0."""
        if r <= 0:
            return 0.0
        return float(2 * num_tokens * embed_dims)
