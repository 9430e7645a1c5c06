"""Full-resolution maps back from a reduced token sequence, for dense heads.

Modes (docs/restoration.md):
- unmerge (default): every removed position takes the value of the token that now represents it;
- stale: a removed position keeps its own value from the last layer before it was removed;
- zero: removed positions are zero (a lower bound, for ablation);
- similarity: a removed position is the softmax-of-cosine weighted sum of the tokens that survived
  its removal, weights from the features at that moment (after Liang et al., NeurIPS 2022).
"""
from typing import Optional

import torch
from torch import Tensor

from .state import TokenState, gather_tokens

RESTORE_MODES = ('unmerge', 'stale', 'zero', 'similarity')


def check_restore_mode(mode: str) -> str:
    if mode not in RESTORE_MODES:
        raise ValueError(f'unknown restoration mode {mode!r}; choose one of {list(RESTORE_MODES)}')
    return mode


def restore_tokens(state: TokenState, tokens: Tensor, mode: str = 'unmerge',
                   stale: Optional[Tensor] = None) -> Tensor:
    """(B, L, C) tokens of the reduced sequence -> (B, L0, C), one row per original position.

    ``stale`` (B, L0, C) holds, per position, its value when it was removed (state.stale_hidden or
    state.stale_residual, or a function of them); needed for mode 'stale'.
    """
    full = gather_tokens(tokens, state.source_map)
    if mode == 'unmerge' or state.num_tokens == state.num_original:
        return full
    removed = state.removed_mask()[..., None]
    if mode == 'zero':
        return full.masked_fill(removed, 0)
    if mode == 'stale':
        if stale is None:
            raise ValueError("restoration 'stale' needs the values recorded at removal: build the state "
                             'with record_stale=True')
        return torch.where(removed, stale.to(full.dtype), full)
    if mode == 'similarity':
        if len(state.removals) == 0 and removed.any():
            raise ValueError("restoration 'similarity' needs the removal records: build the state with "
                             'record_similarity=True')
        # Latest removals first: their survivors are already final when earlier ones read them.
        for record in reversed(state.removals):
            survivors = gather_tokens(full, record.survivor_positions)
            rebuilt = torch.bmm(record.weights.to(full.dtype), survivors)
            full = full.scatter(1, record.positions[..., None].expand_as(rebuilt), rebuilt)
        return full
    check_restore_mode(mode)
