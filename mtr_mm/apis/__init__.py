"""Python entry points for scripts and notebooks."""
import importlib
from typing import Optional, Union

from mmengine.config import Config
from mmengine.registry import init_default_scope

from ..checkpoint import load_model_checkpoint
from .distributed import init_cpu_distributed

LIBRARIES = {'mmpretrain': 'mmpretrain', 'mmseg': 'mmseg', 'mmdet': 'mmdet', 'mmaction': 'mmaction'}


def load_config(config: Union[str, Config], cfg_options: Optional[dict] = None) -> Config:
    cfg = Config.fromfile(config) if not isinstance(config, Config) else config.copy()
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
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


def init_model(config: Union[str, Config], checkpoint: Optional[str] = None, device: str = 'cpu',
               cfg_options: Optional[dict] = None):
    """Build the model of a config, load ``checkpoint`` (official Vim or this project's), and return
    it in eval mode on ``device``. ``model(images, mode='tensor')`` then gives raw outputs (logits
    for classification)."""
    cfg = load_config(config, cfg_options)
    task_library(cfg)
    registry = importlib.import_module(f"{cfg.default_scope}.registry").MODELS
    model = registry.build(cfg.model)
    if checkpoint is not None:  # replaces every weight: the config's own init (e.g. Pretrained) is skipped
        load_model_checkpoint(model, checkpoint)
    else:
        model.init_weights()
    model.cfg = cfg
    return model.to(device).eval()


__all__ = ['init_model', 'load_config', 'task_library', 'init_cpu_distributed']
