"""HSA-style pruning (importance of ToP-ViM, Zhan et al., NeurIPS 2024), training-free,
order-preserving. The hidden-state alignment kernel of that paper is out of scope."""
from typing import Optional

from torch import Tensor

from ._matching import (ascending_non_cls, check_r, identity_plan, nearest_survivor, num_non_cls,
                        positive_sum, sort_by_position, survivors)
from .base import REDUCERS, BaseReducer
from .state import ReductionPlan, TokenState


@REDUCERS.register_module(name='hsa')
class HSAReducer(BaseReducer):
    """Importance = sum over channels of ``clamp(hidden, min=0)`` with hidden = the mixer output of
    the layer; the r least important non-cls tokens are pruned (no merge; ties: lower index first),
    the survivors keep their original order. For dense restoration each pruned token is represented
    by the non-cls survivor nearest to it in original sequence position (ties: the earlier one).

    No knobs.

    Limit: ``r <= N - 1`` (N = non-cls tokens; one non-cls token must survive).
    """
    needs_delta = False
    preserves_order = True

    def max_r(self, num_tokens: int, has_cls: bool) -> int:
        return max(num_non_cls(num_tokens, has_cls) - 1, 0)

    def plan(self, state: TokenState, r: int, delta_score: Optional[Tensor] = None) -> ReductionPlan:
        length = state.num_tokens
        has_cls = state.cls_index is not None
        r = check_r('hsa', r, self.max_r(length, has_cls), length, has_cls,
                    'one non-cls token must survive')
        if r == 0:
            return identity_plan(state)
        cls_mask = state.cls_mask()
        source = ascending_non_cls(positive_sum(state.hidden), cls_mask)[:, :r]
        keep = sort_by_position(state.positions, survivors(length, source))
        target = nearest_survivor(state.positions, keep, source, cls_mask if has_cls else None)
        return ReductionPlan(keep=keep, source=source, target=target, merge=False)

    def overhead_flops(self, num_tokens: int, r: int, embed_dims: int) -> float:
        """MACs: ``L·C`` (the clamp-sum over channels); sorting counts 0."""
        if r <= 0:
            return 0.0
        return float(num_tokens * embed_dims)
