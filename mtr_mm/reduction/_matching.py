"""Small pure tensor helpers shared by the reducers (scores, similarity, matching, ordering).

Every function works per image on (B, L, ...) tensors and depends only on that image's own data, so
planning an image alone gives the same result as planning it inside a batch. Sorting is always
stable: ties are broken by the current token index, which is a function of the image alone.
"""
import operator
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from .state import ReductionPlan, TokenState, gather_tokens


def num_non_cls(num_tokens: int, has_cls: bool) -> int:
    """Tokens that may be scored / removed: every token but the class token."""
    return num_tokens - int(bool(has_cls))


def check_r(name: str, r, limit: int, num_tokens: int, has_cls: bool, why: str) -> int:
    """Return r as an int if 0 <= r <= limit, else raise ValueError naming the limit and its reason.
    Any integer type is accepted (python, numpy, 0-dim integer tensor), bools and floats are not."""
    try:
        if isinstance(r, bool):
            raise TypeError
        r = operator.index(r)
    except TypeError:
        raise ValueError(f'{name}: r must be a non-negative int, got {r!r}') from None
    if r < 0:
        raise ValueError(f'{name}: r must be >= 0, got {r}')
    if r > limit:
        cls_text = 'with' if has_cls else 'without'
        raise ValueError(
            f'{name}: cannot remove r={r} tokens from L={num_tokens} tokens ({cls_text} a class '
            f'token): the limit is r <= {max(limit, 0)} ({why})')
    return r


def identity_plan(state: TokenState) -> ReductionPlan:
    """Keep every token in its current order, remove nothing (apply_plan returns the state as is)."""
    batch, length = state.positions.shape
    device = state.positions.device
    keep = torch.arange(length, device=device).expand(batch, length)
    empty = torch.zeros(batch, 0, dtype=torch.long, device=device)
    return ReductionPlan(keep=keep, source=empty, target=empty.clone(), merge=True)


def token_features(state: TokenState, index: Tensor, similarity: str) -> Tensor:
    """Features (B, K, C) of the tokens ``index`` (B, K) for a similarity: ``'hidden'`` (the mixer
    output) or ``'block'`` (the block output residual + hidden in fp32; hidden alone before the first
    block, residual=None). Gathered before the add, so only the K rows are read."""
    hidden = gather_tokens(state.hidden, index)
    if similarity == 'hidden':
        return hidden
    if state.residual is None:
        return hidden.float()
    return gather_tokens(state.residual, index).float() + hidden.float()


def cosine_similarity(a: Tensor, b: Tensor) -> Tensor:
    """(B, M, C) x (B, K, C) -> (B, M, K) cosine similarity, computed in fp32."""
    a = F.normalize(a.float(), dim=-1)
    b = F.normalize(b.float(), dim=-1)
    if a.device.type not in ('cpu', 'cuda'):  # e.g. meta: no autocast there
        return a @ b.transpose(1, 2)
    with torch.autocast(a.device.type, enabled=False):  # bf16 autocast would round the products: near-ties flip
        return a @ b.transpose(1, 2)


def ascending_non_cls(scores: Tensor, cls_mask: Tensor, descending: bool = False) -> Tensor:
    """(B, L) token indices: the non-cls tokens sorted by score (ascending unless ``descending``),
    then the class token last. Stable: equal scores keep their current index order."""
    order = torch.argsort(scores, dim=1, descending=descending, stable=True)
    is_cls = cls_mask.gather(1, order).to(torch.uint8)
    return order.gather(1, torch.argsort(is_cls, dim=1, stable=True))


def sort_by_position(positions: Tensor, index: Tensor) -> Tensor:
    """Reorder token indices (B, K) by their original positions (restores spatial order)."""
    order = torch.argsort(positions.gather(1, index), dim=1, stable=True)
    return index.gather(1, order)


def survivors(num_tokens: int, removed: Tensor) -> Tensor:
    """(B, L - r) indices of the tokens not in ``removed`` (B, r), in current index order."""
    batch = removed.shape[0]
    flag = torch.zeros(batch, num_tokens, dtype=torch.uint8, device=removed.device)
    flag.scatter_(1, removed, 1)
    return torch.argsort(flag, dim=1, stable=True)[:, :num_tokens - removed.shape[1]]


def drop_cls(index: Tensor, cls_mask: Optional[Tensor]) -> Tensor:
    """Remove the class token (exactly one per image; ``cls_mask`` None: there is none) from the
    token indices (B, K), keeping the others in their order."""
    if cls_mask is None:
        return index
    order = torch.argsort(cls_mask.gather(1, index).to(torch.uint8), dim=1, stable=True)
    return index.gather(1, order)[:, :index.shape[1] - 1]


def grid_coordinates(positions: Tensor, cls_position: Optional[int], grid_size: tuple) -> Tensor:
    """Original sequence positions (B, K) -> their patch (row, column) on the grid, (B, K, 2) float.
    The class token's own position must not be among them."""
    patch = positions - (positions > cls_position).long() if cls_position is not None else positions
    width = grid_size[1]
    return torch.stack([patch // width, patch % width], dim=-1).float()


def nearest_survivor(state: TokenState, keep: Tensor, source: Tensor) -> Tensor:
    """For pruning: the non-cls survivor nearest on the patch grid (Euclidean distance between
    original positions) to each removed token, so a token at a row start is never represented
    by the end of the previous row.

    keep (B, L') survivors; source (B, r) removed tokens, both current indices. Returns (B, r)
    token indices (old indexing). Ties go to the survivor earliest in original order.
    """
    has_cls = state.cls_index is not None
    candidates = sort_by_position(state.positions, drop_cls(keep, state.cls_mask() if has_cls else None))
    cls_position = state.cls_position if has_cls else None
    cand_xy = grid_coordinates(state.positions.gather(1, candidates), cls_position, state.grid_size)
    src_xy = grid_coordinates(state.positions.gather(1, source), cls_position, state.grid_size)
    distance = torch.cdist(src_xy, cand_xy, compute_mode='donot_use_mm_for_euclid_dist')
    return candidates.gather(1, distance.argmin(dim=-1))  # argmin: the first (earliest) of equals


def best_edges(similarity: Tensor, r: int) -> Tuple[Tensor, Tensor]:
    """Soft matching on a (B, M, K) similarity: each row's most similar column, then the r rows
    with the highest such similarity. Returns (rows (B, r), their columns (B, r)); ties go to the
    lower row / column index."""
    node_max, node_idx = similarity.max(dim=-1)
    rows = torch.argsort(node_max, dim=-1, descending=True, stable=True)[:, :r]
    return rows, node_idx.gather(1, rows)


def check_choice(owner: str, knob: str, value, choices: tuple) -> None:
    if value not in choices:
        raise ValueError(f'{owner}: {knob} must be one of {list(choices)}, got {value!r}')


def check_score(owner: str, score: Optional[Tensor], state: TokenState, request: str) -> Tensor:
    """The mixer's per-token score (B, L) a reducer asked for, checked; returned in fp32."""
    if score is None:
        raise ValueError(f'{owner} needs the per-token score {request!r} (B, L) of the reducing layer, '
                         'computed by the mixer (VisionMamba does this when the reducer is installed)')
    if tuple(score.shape) != tuple(state.positions.shape):
        raise ValueError(f'{owner}: the score must have shape (B, L) = '
                         f'{tuple(state.positions.shape)}, got {tuple(score.shape)}')
    return score.float()
