"""UTR: the unified token reduction of ToR-SSM (Zhan et al., "Rethinking Token Reduction for State
Space Models", EMNLP 2024, §4.1-4.3), training-free, order-preserving."""
import math
import numbers
from typing import Optional

import torch
from torch import Tensor

from ._matching import (ascending_non_cls, best_edges, check_choice, check_r, check_score, cosine_similarity,
                        identity_plan, num_non_cls, sort_by_position, survivors, token_features)
from .base import REDUCERS, BaseReducer
from .scores import clipped_y_score_macs
from .state import ReductionPlan, TokenState


@REDUCERS.register_module(name='utr')
class UTRReducer(BaseReducer):
    """Importance = the SSM output y of the reducing layer before the z gate, clipped at 0 and
    averaged over the inner channels, summed over both scan directions (``score_request='y_clip'``,
    handed in by the mixer). The N non-cls tokens are sorted by importance (stable): the
    ``floor(N/2)`` lowest form the less-important group, the rest the more-important group. Each
    less-important token is matched to its most cosine-similar more-important token; the r pairs
    with the highest similarity leave. Hybrid reduction: in the residual stream all r are merged
    into their partners (size-weighted); in the hidden stream the ``round(hidden_prune * r)`` least
    important of them are pruned and the others merged. Survivors keep their original order.

    Args:
        hidden_prune (float): share of the r leaving tokens pruned (not merged) in the hidden
            stream, in [0, 1]; 0 merges everything in both streams (the plain merging variant).
            Default 0.5 (half pruned, half merged).
        similarity (str): features for the matching: ``'hidden'`` (mixer output; default) or
            ``'block'`` (residual + hidden).

    Limit: ``r <= floor(N/2)`` (only less-important tokens leave).
    """
    score_request = 'y_clip'
    preserves_order = True

    def __init__(self, hidden_prune: float = 0.5, similarity: str = 'hidden'):
        if isinstance(hidden_prune, bool) or not isinstance(hidden_prune, numbers.Real) \
                or not 0.0 <= float(hidden_prune) <= 1.0:
            raise ValueError(f'utr: hidden_prune must be a number in [0, 1] (the share of the removed tokens '
                             f'pruned rather than merged in the hidden stream), got {hidden_prune!r}')
        check_choice('utr', 'similarity', similarity, ('hidden', 'block'))
        self.hidden_prune = float(hidden_prune)
        self.similarity = similarity

    def max_r(self, num_tokens: int, has_cls: bool) -> int:
        return num_non_cls(num_tokens, has_cls) // 2

    def plan(self, state: TokenState, r: int, score: Optional[Tensor] = None) -> ReductionPlan:
        length = state.num_tokens
        has_cls = state.cls_index is not None
        r = check_r('utr', r, self.max_r(length, has_cls), length, has_cls,
                    'only the less-important half of the non-cls tokens can leave')
        if r == 0:
            return identity_plan(state)
        importance = check_score('utr', score, state, self.score_request)
        order = ascending_non_cls(importance, state.cls_mask())
        num_less = num_non_cls(length, has_cls) // 2
        less = order[:, :num_less]
        more = order[:, num_less:length - int(has_cls)]
        similarity = cosine_similarity(token_features(state, less, self.similarity),
                                       token_features(state, more, self.similarity))
        rows, cols = best_edges(similarity, r)
        source, target = less.gather(1, rows), more.gather(1, cols)
        keep = sort_by_position(state.positions, survivors(length, source))
        return ReductionPlan(keep=keep, source=source, target=target, merge=True,
                             hidden_pruned=least_important(importance.gather(1, source), self.pruned_count(r)))

    def pruned_count(self, r: int) -> int:
        return int(math.floor(self.hidden_prune * r + 0.5))

    def overhead_flops(self, num_tokens: int, r: int, embed_dims: int) -> float:
        """MACs: importance ``2·L·E`` with E = 2·C (``clipped_y_score_macs``), similarity ``L·C``
        (normalising) ``+ floor(L/2)·ceil(L/2)·C`` (less x more dot products), ``+ L·C`` for the
        residual + hidden add with ``similarity='block'``; sorting counts 0. Counted for L tokens (the
        class token is not subtracted)."""
        if r <= 0:
            return 0.0
        num_less = num_tokens // 2
        channels = embed_dims
        flops = (clipped_y_score_macs(num_tokens, channels) + num_tokens * channels
                 + num_less * (num_tokens - num_less) * channels)
        if self.similarity == 'block':
            flops += num_tokens * channels
        return float(flops)


def least_important(importance: Tensor, count: int) -> Tensor:
    """(B, r) bool: True at the ``count`` lowest of each row (ties: the earlier entry)."""
    order = torch.argsort(importance, dim=1, stable=True)[:, :count]
    return torch.zeros(importance.shape, dtype=torch.bool, device=importance.device).scatter_(1, order, True)
