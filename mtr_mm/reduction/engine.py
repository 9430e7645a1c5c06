"""TokenReduction: a reducer + a schedule + a restoration mode, called by the Vim forward."""
import math
from dataclasses import replace
from typing import List, Optional, Sequence, Union

import torch
from torch import Tensor

from ._matching import check_choice, drop_cls
from .base import build_reducer
from .flops import FlopsReport, VimDims, vim_flops
from .restore import check_restore_mode, restore_tokens
from .schedule import Schedule
from .state import TokenState, apply_plan

CLS_POSITIONS = ('sorted', 'middle')


class TokenReduction:
    """What the Vim forward calls between blocks.

    Args:
        method: reducer name or config dict (``dict(type='mtr', keep_ratio=0.5)``).
        schedule: ``dict(layers=[...], r=... | keep_ratio=... | flops_reduction=...)``.
        restore: how dense backbones get full maps back ('unmerge', 'stale', 'zero', 'similarity').
        reactivate_at: run layers from this one on the full sequence again (dense models); every
            reducing layer must come before it.
        cls_position: where the class token goes after each reduction of an order-preserving
            method: 'sorted' (where its original position sorts among the survivors) or 'middle'
            (the middle of the shortened sequence, as ToP-ViM and R-MeeTo do; for models whose
            class token starts at the middle, like Vim's).
    """

    def __init__(self, method='mtr', schedule: Optional[dict] = None, restore: str = 'unmerge',
                 reactivate_at: Optional[int] = None, cls_position: str = 'sorted'):
        self.reducer = build_reducer(method)
        self.schedule = Schedule(**(schedule or dict(layers=[], r=0)))
        self.restore = check_restore_mode(restore)
        check_choice('reduction', 'cls_position', cls_position, CLS_POSITIONS)
        if cls_position == 'middle' and not self.reducer.preserves_order:
            raise ValueError(f"cls_position='middle' applies to order-preserving methods; {self.reducer!r} "
                             "reorders the tokens: use cls_position='sorted'")
        late = [i for i in self.schedule.layers if reactivate_at is not None and i >= reactivate_at]
        if late:
            raise ValueError(f'reactivate_at={reactivate_at} restores the full sequence before layer {reactivate_at}, '
                             f'but the schedule still reduces after layers {late}: reduce only before it '
                             f'(layers < {reactivate_at}) or raise reactivate_at')
        self.reactivate_at = reactivate_at
        self.cls_position = cls_position
        self._removed = {}  # (dims, grid, has_cls) -> tokens removed after each layer

    def __repr__(self):
        return (f'TokenReduction(method={self.reducer!r}, schedule={self.schedule!r}, '
                f'restore={self.restore!r}, reactivate_at={self.reactivate_at}, cls_position={self.cls_position!r})')

    def check(self, dims: VimDims, grid_size: tuple, cls_position: Optional[int]):
        """Validate for one input size at build time: the schedule resolves and every step can be
        planned by the reducer (a dry run on random tokens). ``grid_size`` is (h, w), or (t, h, w)
        for video; ``cls_position`` the class token's index in the sequence (None without one)."""
        if self.reactivate_at is not None and not 0 < self.reactivate_at < dims.depth:
            raise ValueError(f'reactivate_at={self.reactivate_at} must be a layer in [1, {dims.depth - 1}]')
        has_cls = cls_position is not None
        num_patches = math.prod(grid_size)
        if self.cls_position == 'middle' and has_cls:
            check_cls_at_middle(cls_position, num_patches + 1)
        removed = self.removed(dims, grid_size, has_cls)
        generator = torch.Generator().manual_seed(0)
        hidden = torch.randn(1, num_patches + int(has_cls), dims.embed_dims, generator=generator)
        state = TokenState.create(hidden, cls_position, grid_size)
        state.residual = hidden.clone()
        for r in removed:
            if r:
                score = torch.rand(1, state.num_tokens, generator=generator)
                state = self.reduce(state, r, score)
        return removed

    def removed(self, dims: VimDims, grid_size: tuple, has_cls: bool) -> List[int]:
        key = (dims, tuple(grid_size), has_cls)
        if key not in self._removed:
            num_patches = math.prod(grid_size)
            self._removed[key] = self.schedule.removed(dims, num_patches, num_patches + int(has_cls), has_cls,
                                                       self.reducer, self.reactivate_at)
        return self._removed[key]

    def flops(self, dims: VimDims, grid_size: tuple, has_cls: bool, directions: int = 1,
              restored_after: Sequence[int] = ()) -> FlopsReport:
        """``restored_after``: layers whose output a dense head reads back at full resolution."""
        num_patches = math.prod(grid_size)
        return vim_flops(dims, num_patches, num_patches + int(has_cls), self.removed(dims, grid_size, has_cls),
                         self.reducer, directions, self.reactivate_at, self.restore, restored_after)

    def record_flags(self) -> dict:
        """What the token state must record for this restoration mode."""
        return dict(record_stale=self.restore == 'stale', record_similarity=self.restore == 'similarity')

    def score_request(self, r: int) -> Optional[str]:
        """The per-token score the mixer must compute at a layer removing r tokens (None: none)."""
        return self.reducer.score_request if r else None

    def reduce(self, state: TokenState, r: int, score: Optional[Tensor]) -> TokenState:
        if not r:
            return state
        plan = self.reducer.plan(state, r, score)
        if self.cls_position == 'middle' and state.cls_index is not None:  # where it starts: checked at build
            plan = replace(plan, keep=cls_to_middle(plan.keep, state.cls_mask()))
        return apply_plan(state, plan)

    def reactivate(self, state: TokenState) -> TokenState:
        """The full sequence again: every position restored, then treated as never reduced."""
        if state.num_tokens == state.num_original:  # nothing was removed: keep the tensors as they are
            return state
        hidden = restore_tokens(state, state.hidden, self.restore, state.stale_hidden)
        residual = restore_tokens(state, state.residual, self.restore, state.stale_residual)
        fresh = TokenState.create(hidden, state.cls_position, state.grid_size)
        fresh.residual = residual
        return fresh


def check_cls_at_middle(cls_index: int, num_tokens: int) -> None:
    """cls_position='middle' keeps the class token where the model put it: only for models that put
    it at the middle of their unreduced sequence. Checked when the reduction is installed, from the
    model's own class-token index, so the forward needs no look at the data (no host sync, graph capture
    allowed)."""
    middle = (num_tokens - 1) // 2
    if cls_index != middle:
        raise ValueError(f"cls_position='middle' moves the class token to the middle of the shortened sequence, "
                         f'but this model puts it at index {cls_index} of {num_tokens} '
                         f"(not the middle, {middle}): use cls_position='sorted'")


def cls_to_middle(keep: Tensor, cls_mask: Tensor) -> Tensor:
    """Survivors (B, L') with the class token moved to index (L' - 1) // 2, the others in order."""
    others = drop_cls(keep, cls_mask)
    middle = others.shape[1] // 2
    cls_index = torch.argmax(cls_mask.to(torch.uint8), dim=1, keepdim=True)
    return torch.cat([others[:, :middle], cls_index, others[:, middle:]], dim=1)


def build_reduction(cfg: Union[None, dict, TokenReduction]) -> Optional[TokenReduction]:
    """None / a TokenReduction / its keyword arguments as a config dict."""
    if cfg is None or isinstance(cfg, TokenReduction):
        return cfg
    return TokenReduction(**cfg)
