"""Per-token scores the mixer computes for a reducer, at reducing layers only.

A reducer names the score it needs in ``score_request``; the mixer computes it per scan direction
from tensors the scan produces anyway, in channel-major (E, B, L) layout, and sums the directions
with the backward one flipped back to image order. Scores are fp32 (also under bf16 autocast).
"""
from torch import Tensor

from ..ops import channel_mean

# 'delta_softplus': Δ as the scan uses it, softplus(dt_proj(x) + bias) (MTR's default);
# 'delta': the same before the softplus;
# 'y_clip': the SSM output y before the z gate, clipped at 0 (the importance of the ToR-SSM and ToP-ViM
# papers as we read them; their released code scores other tensors, see docs/reduction.md).
SCORE_REQUESTS = ('delta_softplus', 'delta', 'y_clip')


def check_score_request(owner: str, request) -> None:
    if request is not None and request not in SCORE_REQUESTS:
        raise ValueError(f'{owner}: score_request must be None or one of {list(SCORE_REQUESTS)}, got {request!r}')


def mean_delta_score(delta: Tensor, bias: Tensor, softplus: bool) -> Tensor:
    """(E, B, L) Δ of one direction before its bias (E,) and softplus -> (B, L): the mean over the
    inner channels of Δ + bias, after the softplus when ``softplus``."""
    return channel_mean(delta, bias, 'softplus' if softplus else 'none')


def clipped_y_score(y: Tensor) -> Tensor:
    """(E, B, L) ungated SSM output of one direction -> (B, L): mean over the inner channels of
    clamp(y, min=0)."""
    return channel_mean(y, None, 'relu')


def clipped_y_score_macs(num_tokens: int, embed_dims: int) -> int:
    """MACs of the 'y_clip' score of one layer: the clip-mean over E = 2·C inner channels (Vim's
    expand 2), per scan direction."""
    return 2 * num_tokens * 2 * embed_dims
