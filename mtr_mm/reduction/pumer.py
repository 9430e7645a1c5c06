"""PuMer-style merging as ToR-SSM (Zhan et al., EMNLP 2024) applied it to Mamba (its `pumer` strategy):
ToMe's bipartite matching on the hidden states, with the survivors kept in spatial order. Not PuMer's
own text-informed pruning or score-weighted merge (docs/reduction.md)."""
from typing import Optional

from torch import Tensor

from ._matching import identity_plan, sort_by_position, survivors
from .base import REDUCERS
from .state import ReductionPlan, TokenState
from .tome import ToMeReducer, bipartite_soft_matching


@REDUCERS.register_module(name='pumer')
class PuMerReducer(ToMeReducer):
    """Same matching and size-weighted merge as :class:`ToMeReducer` (A = even current indices,
    B = odd, class token protected, r highest-similarity A→B edges merged). The only difference:
    the survivors are re-sorted by original position instead of being output as ``[unmerged A, B]``,
    so the sequence keeps its spatial order (each merged group lives on at its B token's place).
    Same plan sets as ToMe, same overhead, same limit.

    No knobs.
    """
    preserves_order = True
    _name = 'pumer'

    def plan(self, state: TokenState, r: int, score: Optional[Tensor] = None) -> ReductionPlan:
        r = self._check(state, r)
        if r == 0:
            return identity_plan(state)
        source, target, _, _ = bipartite_soft_matching(state, r)
        keep = sort_by_position(state.positions, survivors(state.num_tokens, source))
        return ReductionPlan(keep=keep, source=source, target=target, merge=True)
