"""TokenReduction: a reducer + a schedule + a restoration mode, called by the Vim forward."""
import math
from typing import List, Optional, Union

import torch
from torch import Tensor

from .base import build_reducer
from .flops import FlopsReport, VimDims, vim_flops
from .restore import check_restore_mode, restore_tokens
from .schedule import Schedule
from .state import TokenState, apply_plan


class TokenReduction:
    """What the Vim forward calls between blocks.

    Args:
        method: reducer name or config dict (``dict(type='mtr', keep_ratio=0.5)``).
        schedule: ``dict(layers=[...], r=... | keep_ratio=... | flops_reduction=...)``.
        restore: how dense backbones get full maps back ('unmerge', 'stale', 'zero', 'similarity').
        reactivate_at: run layers from this one on the full sequence again (dense models).
    """

    def __init__(self, method='mtr', schedule: Optional[dict] = None, restore: str = 'unmerge',
                 reactivate_at: Optional[int] = None):
        self.reducer = build_reducer(method)
        self.schedule = Schedule(**(schedule or dict(layers=[], r=0)))
        self.restore = check_restore_mode(restore)
        self.reactivate_at = reactivate_at
        self._removed = {}  # (dims, grid, has_cls) -> tokens removed after each layer

    def __repr__(self):
        return (f'TokenReduction(method={self.reducer!r}, schedule={self.schedule!r}, '
                f'restore={self.restore!r}, reactivate_at={self.reactivate_at})')

    def check(self, dims: VimDims, grid_size: tuple, cls_position: Optional[int]):
        """Validate for one input size at build time: the schedule resolves and every step can be
        planned by the reducer (a dry run on random tokens). ``grid_size`` is (h, w), or (t, h, w)
        for video; ``cls_position`` the class token's index in the sequence (None without one)."""
        if self.reactivate_at is not None and not 0 < self.reactivate_at < dims.depth:
            raise ValueError(f'reactivate_at={self.reactivate_at} must be a layer in [1, {dims.depth - 1}]')
        has_cls = cls_position is not None
        removed = self.removed(dims, grid_size, has_cls)
        num_patches = math.prod(grid_size)
        generator = torch.Generator().manual_seed(0)
        hidden = torch.randn(1, num_patches + int(has_cls), dims.embed_dims, generator=generator)
        state = TokenState.create(hidden, cls_position, grid_size)
        state.residual = hidden.clone()
        for r in removed:
            if r:
                score = torch.rand(1, state.num_tokens, generator=generator)
                state = apply_plan(state, self.reducer.plan(state, r, score))
        return removed

    def removed(self, dims: VimDims, grid_size: tuple, has_cls: bool) -> List[int]:
        key = (dims, tuple(grid_size), has_cls)
        if key not in self._removed:
            num_patches = math.prod(grid_size)
            self._removed[key] = self.schedule.removed(dims, num_patches, num_patches + int(has_cls), has_cls,
                                                       self.reducer, self.reactivate_at)
        return self._removed[key]

    def flops(self, dims: VimDims, grid_size: tuple, has_cls: bool, directions: int = 1) -> FlopsReport:
        num_patches = math.prod(grid_size)
        return vim_flops(dims, num_patches, num_patches + int(has_cls), self.removed(dims, grid_size, has_cls),
                         self.reducer, directions, self.reactivate_at)

    def record_flags(self) -> dict:
        """What the token state must record for this restoration mode."""
        return dict(record_stale=self.restore == 'stale', record_similarity=self.restore == 'similarity')

    def delta_activation(self, r: int) -> Optional[str]:
        """What the mixer must report for a layer removing r tokens (None: nothing)."""
        return getattr(self.reducer, 'delta_activation', 'softplus') if r and self.reducer.needs_delta else None

    def reduce(self, state: TokenState, r: int, delta_score: Optional[Tensor]) -> TokenState:
        return apply_plan(state, self.reducer.plan(state, r, delta_score)) if r else state

    def reactivate(self, state: TokenState) -> TokenState:
        """The full sequence again: every position restored, then treated as never reduced."""
        if state.num_tokens == state.num_original:  # nothing was removed: keep the tensors as they are
            return state
        hidden = restore_tokens(state, state.hidden, self.restore, state.stale_hidden)
        residual = restore_tokens(state, state.residual, self.restore, state.stale_residual)
        fresh = TokenState.create(hidden, state.cls_position, state.grid_size)
        fresh.residual = residual
        return fresh



def build_reduction(cfg: Union[None, dict, TokenReduction]) -> Optional[TokenReduction]:
    """None / a TokenReduction / its keyword arguments as a config dict."""
    if cfg is None or isinstance(cfg, TokenReduction):
        return cfg
    return TokenReduction(**cfg)
