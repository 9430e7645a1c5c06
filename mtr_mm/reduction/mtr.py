"""MTR: Mamba Token Reduction (Ma et al., arXiv 2507.14042), training-free, order-preserving."""
import math
import numbers
from typing import Optional

import torch
from torch import Tensor

from ._matching import (ascending_non_cls, check_choice, check_r, check_score, cosine_similarity,
                        identity_plan, num_non_cls, sort_by_position, token_features)
from .base import REDUCERS, BaseReducer
from .state import ReductionPlan, TokenState


@REDUCERS.register_module(name='mtr')
class MTRReducer(BaseReducer):
    """Δ-scored Keep / Target / Source split; each Source merges into its most similar Target.

    Score: the per-token SSM timescale of the reducing layer, ``s_t = mean over inner channels of
    (Δ_fwd[t] + Δ_bwd[t])`` (backward branch flipped back), handed in by the mixer as
    ``score`` (its ``score_request``). The non-cls tokens are sorted by score (stable: ties keep index order):

    - Source = the ``r`` lowest-scored tokens (removed at this layer);
    - of the ``S = N - r`` survivors (N non-cls tokens), Keep = the ``floor(keep_ratio * S)``
      highest-scored, Target = the other ``S - Keep >= 1`` (the middle group);
    - each Source is averaged into its most cosine-similar Target (ties: the lowest-scored Target);
    - survivors (cls + Keep + Target) are re-sorted by original position, so the sequence keeps its
      spatial order and the class token sits where its original position sorts.

    Args:
        keep_ratio (float): fraction of the survivors that form the Keep group, in [0, 1); rounded
            down, so at least one Target always remains. Default 0.75.
        similarity (str): features for the Source→Target cosine similarity: ``'block'`` (default;
            the block output residual + hidden; equals ``'hidden'`` before the first block, where
            there is no residual) or ``'hidden'`` (the mixer output of the layer).
        merge_weights (str): ``'mean'`` (default; plain mean of the Target and all the Sources joining
            it, each counted once) or ``'size'`` (ToMe-style size-weighted average: a token standing
            for k original tokens counts k times). Sizes are tracked either way.
        delta_activation (str): which Δ the mixer scores with: ``'softplus'`` (default; the Δ that
            the scan uses, softplus(dt_proj(x) + bias)) or ``'none'`` (pre-softplus, dt_proj(x) +
            bias). Read by the mixer, not by ``plan``.

    The defaults were chosen on a validation split, never on test images (docs/benchmarks.md §3):
    every combination of keep_ratio 0.25 / 0.5 / 0.75 x similarity x merge_weights x delta_activation
    on 120 validation images of an earlier checkpoint of the Fashion classifier at -30 % FLOPs, layers
    [6, 9, 12, 15, 18] (then the shipped set). The earlier defaults (0.5, 'hidden', 'size', 'softplus')
    were never chosen on a split. The shipped configs choose per task on the current models' validation
    splits: classification keep_ratio=0.5 at layers [5, 9, 13, 17, 21] (configs/_base_/reductions/mtr.py),
    segmentation and detection these defaults at [4, 8, 12, 16, 20] (configs/_base_/reductions/mtr_dense.py).

    Limit: ``r <= N - 1`` (at least one Target must remain), N = non-cls tokens.
    """
    preserves_order = True

    def __init__(self, keep_ratio: float = 0.75, similarity: str = 'block',
                 merge_weights: str = 'mean', delta_activation: str = 'softplus'):
        if isinstance(keep_ratio, bool) or not isinstance(keep_ratio, numbers.Real) \
                or not 0.0 <= float(keep_ratio) < 1.0:
            raise ValueError(f'mtr: keep_ratio must be a number in [0, 1) (at least one Target must '
                             f'remain), got {keep_ratio!r}')
        check_choice('mtr', 'similarity', similarity, ('hidden', 'block'))
        check_choice('mtr', 'merge_weights', merge_weights, ('size', 'mean'))
        check_choice('mtr', 'delta_activation', delta_activation, ('softplus', 'none'))
        self.keep_ratio = float(keep_ratio)
        self.similarity = similarity
        self.merge_weights = merge_weights
        self.delta_activation = delta_activation

    @property
    def score_request(self) -> str:
        return 'delta_softplus' if self.delta_activation == 'softplus' else 'delta'

    def max_r(self, num_tokens: int, has_cls: bool) -> int:
        """Largest r at one layer: every non-cls token but one Target may leave."""
        return max(num_non_cls(num_tokens, has_cls) - 1, 0)

    def group_sizes(self, num_tokens: int, r: int, has_cls: bool):
        """(Source, Target, Keep) sizes for one layer."""
        survivors = max(num_non_cls(num_tokens, has_cls) - r, 0)
        keep = min(int(math.floor(self.keep_ratio * survivors)), max(survivors - 1, 0))
        return r, survivors - keep, keep

    def plan(self, state: TokenState, r: int, score: Optional[Tensor] = None) -> ReductionPlan:
        length = state.num_tokens
        has_cls = state.cls_index is not None
        r = check_r('mtr', r, self.max_r(length, has_cls), length, has_cls,
                    'at least one Target token must remain to merge into')
        if r == 0:
            return identity_plan(state)
        scores = check_score('mtr', score, state, self.score_request)
        _, num_target, _ = self.group_sizes(length, r, has_cls)

        order = ascending_non_cls(scores, state.cls_mask())     # Source | Target | Keep | cls
        source = order[:, :r]
        targets = order[:, r:r + num_target]
        similarity = cosine_similarity(token_features(state, source, self.similarity),
                                       token_features(state, targets, self.similarity))
        target = targets.gather(1, similarity.argmax(dim=-1))

        keep = sort_by_position(state.positions, order[:, r:])
        weights = None
        if self.merge_weights == 'mean':
            weights = torch.ones_like(state.sizes)
        return ReductionPlan(keep=keep, source=source, target=target, merge=True, weights=weights)

    def overhead_flops(self, num_tokens: int, r: int, embed_dims: int) -> float:
        """MACs: score ``2·L·E`` with E = 2·C (Vim's inner width: the fwd + bwd sum and the mean over
        E channels of the mixer's Δ), similarity ``(r + T)·C`` (normalising Sources and Targets)
        ``+ r·T·C`` (Source x Target dot products), ``+ (r + T)·C`` for the residual + hidden add
        with ``similarity='block'``; sorting counts 0. T = Target count, computed for L tokens
        (the class token is not subtracted: at most one token of difference)."""
        if r <= 0:
            return 0.0
        length, channels = num_tokens, embed_dims
        _, num_target, _ = self.group_sizes(length, r, has_cls=False)
        flops = 2 * length * (2 * channels)
        flops += (r + num_target) * channels + r * num_target * channels
        if self.similarity == 'block':
            flops += (r + num_target) * channels
        return float(flops)
