"""UTR: unified token reduction of ToR-SSM (Zhan et al., "Rethinking Token Reduction for State Space
Models", EMNLP 2024), in its importance-split merging form, training-free, order-preserving."""
from typing import Optional

from torch import Tensor

from ._matching import (ascending_non_cls, best_edges, block_features, check_choice, check_r,
                        cosine_similarity, identity_plan, num_non_cls, positive_sum,
                        sort_by_position, survivors)
from .base import REDUCERS, BaseReducer
from .state import ReductionPlan, TokenState, gather_tokens


@REDUCERS.register_module(name='utr')
class UTRReducer(BaseReducer):
    """Importance = sum over channels of ``clamp(residual + hidden, min=0)`` (the block output; just
    the hidden before the first block). The N non-cls tokens are sorted by importance (stable): the
    ``floor(N/2)`` lowest form the less-important half, the rest the more-important half. Each
    less-important token is matched to its most cosine-similar more-important token; the r pairs
    with the highest similarity are merged (size-weighted average into the more-important token).
    Survivors keep their original order.

    Args:
        similarity (str): features for the matching: ``'block'`` (residual + hidden, the same
            features the importance is computed on; default) or ``'hidden'`` (mixer output).

    Limit: ``r <= floor(N/2)`` (only less-important tokens are merged).
    """
    needs_delta = False
    preserves_order = True

    def __init__(self, similarity: str = 'block'):
        check_choice('utr', 'similarity', similarity, ('block', 'hidden'))
        self.similarity = similarity

    def max_r(self, num_tokens: int, has_cls: bool) -> int:
        return num_non_cls(num_tokens, has_cls) // 2

    def plan(self, state: TokenState, r: int, delta_score: Optional[Tensor] = None) -> ReductionPlan:
        length = state.num_tokens
        has_cls = state.cls_index is not None
        r = check_r('utr', r, self.max_r(length, has_cls), length, has_cls,
                    'only the less-important half of the non-cls tokens can be merged')
        if r == 0:
            return identity_plan(state)
        block = block_features(state)
        order = ascending_non_cls(positive_sum(block), state.cls_mask())
        num_less = num_non_cls(length, has_cls) // 2
        less = order[:, :num_less]
        more = order[:, num_less:length - int(has_cls)]
        features = block if self.similarity == 'block' else state.hidden
        similarity = cosine_similarity(gather_tokens(features, less), gather_tokens(features, more))
        rows, cols = best_edges(similarity, r)
        source, target = less.gather(1, rows), more.gather(1, cols)
        keep = sort_by_position(state.positions, survivors(length, source))
        return ReductionPlan(keep=keep, source=source, target=target, merge=True)

    def overhead_flops(self, num_tokens: int, r: int, embed_dims: int) -> float:
        """MACs: importance ``2·L·C`` (the residual + hidden add and the clamp-sum), similarity
        ``L·C`` (normalising) ``+ floor(L/2)·ceil(L/2)·C`` (less x more dot products); sorting
        counts 0. Counted for L tokens (the class token is not subtracted)."""
        if r <= 0:
            return 0.0
        num_less = num_tokens // 2
        channels = embed_dims
        return float(3 * num_tokens * channels + num_less * (num_tokens - num_less) * channels)
