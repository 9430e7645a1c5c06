"""HSA-style pruning: the token importance of ToP-ViM (Zhan et al., "Exploring Token Pruning in
Vision State Space Models", NeurIPS 2024), training-free, order-preserving. The paper's
pruning-aware hidden-state alignment inside the scan is out of scope."""
from typing import Optional

from torch import Tensor

from ._matching import (ascending_non_cls, check_r, check_score, identity_plan, nearest_survivor, num_non_cls,
                        sort_by_position, survivors)
from .base import REDUCERS, BaseReducer
from .scores import clipped_y_score_macs
from .state import ReductionPlan, TokenState


@REDUCERS.register_module(name='hsa')
class HSAReducer(BaseReducer):
    """Importance (as in ToP-ViM's paper) = the SSM output y of the reducing layer before the z
    gate, clipped at 0 and averaged over the inner channels, summed over both scan directions (the
    backward one flipped back to image order): the mixer hands it in (``score_request='y_clip'``).
    The r least important non-cls tokens are pruned (no merge; ties: lower index first), the
    survivors keep their original order. For dense restoration each pruned token is represented by
    the non-cls survivor nearest to it on the patch grid (ties: the earlier one).

    No knobs (ToP-ViM's class token at the middle: the reduction's ``cls_position='middle'``).

    Limit: ``r <= N - 1`` (N = non-cls tokens; one non-cls token must survive).
    """
    score_request = 'y_clip'
    preserves_order = True

    def max_r(self, num_tokens: int, has_cls: bool) -> int:
        return max(num_non_cls(num_tokens, has_cls) - 1, 0)

    def plan(self, state: TokenState, r: int, score: Optional[Tensor] = None) -> ReductionPlan:
        length = state.num_tokens
        has_cls = state.cls_index is not None
        r = check_r('hsa', r, self.max_r(length, has_cls), length, has_cls,
                    'one non-cls token must survive')
        if r == 0:
            return identity_plan(state)
        importance = check_score('hsa', score, state, self.score_request)
        source = ascending_non_cls(importance, state.cls_mask())[:, :r]
        keep = sort_by_position(state.positions, survivors(length, source))
        return ReductionPlan(keep=keep, source=source, target=nearest_survivor(state, keep, source), merge=False)

    def overhead_flops(self, num_tokens: int, r: int, embed_dims: int) -> float:
        """MACs: the score (``clipped_y_score_macs``: 2·L·E, E = 2·C); sorting counts 0."""
        if r <= 0:
            return 0.0
        return float(clipped_y_score_macs(num_tokens, embed_dims))
