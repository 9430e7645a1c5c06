"""Reducer interface and registry. One file per method registers itself here by name."""
import inspect
from typing import Optional, Union

from mmengine.registry import Registry
from torch import Tensor

from .state import ReductionPlan, TokenState

REDUCERS = Registry('token reducer')


class BaseReducer:
    """Chooses which tokens leave at one layer; ``apply_plan`` does the rest.

    score_request: the per-token score the mixer must hand ``plan`` at the reducing layers, one
        of ``scores.SCORE_REQUESTS`` (None: the reducer scores from the token state alone).
    preserves_order: survivors keep their original spatial order.
    """
    score_request: Optional[str] = None
    preserves_order = True

    def plan(self, state: TokenState, r: int, score: Optional[Tensor] = None) -> ReductionPlan:
        raise NotImplementedError

    def max_r(self, num_tokens: int, has_cls: bool) -> int:
        """The most tokens this method can remove at one layer of ``num_tokens`` tokens."""
        raise NotImplementedError

    def overhead_flops(self, num_tokens: int, r: int, embed_dims: int) -> float:
        """Multiply-accumulates the reduction itself costs at one layer, for the FLOPs counter."""
        raise NotImplementedError

    def __repr__(self):
        options = ', '.join(f'{k}={v!r}' for k, v in vars(self).items() if not k.startswith('_'))  # caches hidden
        return f'{type(self).__name__}({options})'


def build_reducer(cfg: Union[str, dict, BaseReducer]) -> BaseReducer:
    """Build a reducer from its registered name (``'mtr'``) or a config dict
    (``dict(type='mtr', keep_ratio=0.5)``); a reducer instance is returned as is."""
    if isinstance(cfg, BaseReducer):
        return cfg
    if isinstance(cfg, str):
        cfg = dict(type=cfg)
    if not isinstance(cfg, dict) or 'type' not in cfg:
        raise ValueError(f'a reducer config is a registered name or a dict with a "type" key, got {cfg!r}')
    name = cfg['type']
    if name not in REDUCERS.module_dict:
        raise ValueError(f'unknown reducer {name!r}; registered reducers: {sorted(REDUCERS.module_dict)}')
    kwargs = {k: v for k, v in cfg.items() if k != 'type'}
    # Looked up directly: REDUCERS.build would search the task library's scope (mmseg, ...) first.
    reducer = REDUCERS.get(name)
    knobs = list(reducer_knobs(name))
    unknown = sorted(set(kwargs) - set(knobs))
    if unknown:
        raise ValueError(f'reducer {name!r} has no knob {", ".join(unknown)}; its knobs: {knobs or "none"}')
    return reducer(**kwargs)


def reducer_knobs(name: str) -> dict:
    """A registered reducer's knobs (its constructor's arguments) and their defaults."""
    parameters = inspect.signature(REDUCERS.get(name).__init__).parameters.values()  # no __init__: object's
    return {p.name: p.default for p in parameters
            if p.name != 'self' and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
