"""Token reduction for Vision Mamba: token state, plans, the registered reducers, schedules,
the FLOPs counter, restoration, and the engine the Vim forward calls."""
from .base import REDUCERS, BaseReducer, build_reducer
from .engine import TokenReduction, build_reduction
from .flops import FlopsReport, VimDims, vim_flops
from .restore import RESTORE_MODES, restore_tokens
from .schedule import Schedule
from .state import ReductionPlan, TokenState, apply_plan

# Importing a reducer module registers it in REDUCERS.
from .evit import EViTReducer
from .hsa import HSAReducer
from .mtr import MTRReducer
from .pumer import PuMerReducer
from .random_drop import RandomReducer
from .tome import ToMeReducer
from .utr import UTRReducer


__all__ = [
    'TokenState', 'ReductionPlan', 'apply_plan', 'REDUCERS', 'BaseReducer', 'build_reducer',
    'MTRReducer', 'RandomReducer', 'EViTReducer', 'ToMeReducer', 'PuMerReducer', 'UTRReducer',
    'HSAReducer', 'TokenReduction', 'build_reduction', 'Schedule', 'VimDims', 'vim_flops', 'FlopsReport',
    'RESTORE_MODES', 'restore_tokens',
]
