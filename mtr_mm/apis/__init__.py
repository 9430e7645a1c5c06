"""Python entry points for scripts and notebooks."""
import importlib
from typing import Optional, Union

from mmengine.config import Config
from mmengine.registry import init_default_scope

from ..checkpoint import load_model_checkpoint
from .distributed import close_distributed, init_cpu_distributed

LIBRARIES = {'mmpretrain': 'mmpretrain', 'mmseg': 'mmseg', 'mmdet': 'mmdet', 'mmaction': 'mmaction'}


def names_take_knobs(cfg: Config, options: dict) -> dict:
    """Let knobs follow a component given by name (``method=tome`` then ``method.keep_ratio=0.3``, or
    ``method='tome'`` in the config): the name becomes the component's ``type``, in the options
    returned and in ``cfg``. mmengine would otherwise try to set a key inside a string
    (``TypeError: 'str' object ...``)."""
    options = dict(options)
    for key in [k for k, v in options.items() if isinstance(v, str) and any(o.startswith(k + '.') for o in options)]:
        options[f'{key}.type'] = options.pop(key)
    for key in options:
        node = cfg
        for part in key.split('.')[:-1]:
            if not isinstance(node, dict) or part not in node:
                break
            if isinstance(node[part], str):
                node[part] = dict(type=node[part])
            node = node[part]
    return options


def load_config(config: Union[str, Config], cfg_options: Optional[dict] = None) -> Config:
    cfg = Config.fromfile(config) if not isinstance(config, Config) else config.copy()
    if cfg_options:
        cfg.merge_from_dict(names_take_knobs(cfg, cfg_options))
    return cfg


def task_library(cfg: Config):
    """The OpenMMLab library a config belongs to (its default_scope), with all modules registered."""
    scope = cfg.get('default_scope')
    if scope not in LIBRARIES:
        raise ValueError(f"config default_scope {scope!r} is not one of {sorted(LIBRARIES)}; set "
                         "default_scope = 'mmpretrain' | 'mmseg' | 'mmdet' | 'mmaction' in the config")
    library = importlib.import_module(LIBRARIES[scope])
    importlib.import_module(f'{scope}.utils').register_all_modules(init_default_scope=False)
    importlib.import_module('mtr_mm.models')  # registers VimBackbone in every library present
    init_default_scope(scope)
    return library


def build_model(config: Union[str, Config], cfg_options: Optional[dict] = None):
    """The model of a config with its initial (untrained, uninitialised) weights; ``model.cfg`` is the config."""
    cfg = load_config(config, cfg_options)
    task_library(cfg)
    model = importlib.import_module(f'{cfg.default_scope}.registry').MODELS.build(cfg.model)
    model.cfg = cfg
    return model


def init_model(config: Union[str, Config], checkpoint: Optional[str] = None, device: str = 'cpu',
               cfg_options: Optional[dict] = None):
    """Build the model of a config, load ``checkpoint`` (official Vim or this project's), and return
    it in eval mode on ``device``. ``model(images, mode='tensor')`` then gives raw outputs (logits
    for classification)."""
    model = build_model(config, cfg_options)
    if checkpoint is not None:  # replaces every weight: the config's own init (e.g. Pretrained) is skipped
        load_model_checkpoint(model, checkpoint)
    else:
        model.init_weights()
    return model.to(device).eval()


__all__ = ['build_model', 'init_model', 'load_config', 'task_library', 'init_cpu_distributed', 'close_distributed']
