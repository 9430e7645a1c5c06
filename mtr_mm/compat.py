"""Fixes for the pinned stack, applied once on `import mtr_mm` (docs/install.md explains each).

1. torchvision 0.28.0 from PyPI is a CUDA build; beside the CPU torch wheel its import fails with
   "operator torchvision::nms does not exist" because it registers fake kernels for ops whose
   schemas live in its (unloadable) C++ library. Defining those two schemas first lets it import;
   its C++ ops stay unavailable and mmcv.ops provides nms / roi_align instead. mmpretrain imports
   torchvision at top level, and mmengine's Runner imports it through collect_env.
2. torch >= 2.6 loads checkpoints with weights_only=True. mmengine's own checkpoints (load_from /
   resume) hold a few harmless non-tensor types; they are allow-listed here rather than turning safe
   loading off for every file (TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 would unpickle anything).
   mmengine's HistoryBuffer also pickles its statistics functions through `getattr`, which can never
   be allow-listed safely (getattr reaches anything); it is pickled from its data alone instead
   (its __setstate__ restores the default statistics).
3. mmengine's loader of local checkpoints (every init_cfg Pretrained, load_from, resume) calls
   torch.load without weights_only, which TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 turns unsafe; it is
   replaced by our safe loader (mtr_mm.checkpoint.load_from_local_safely).
"""
import argparse
import collections
import copyreg
import importlib.metadata

import numpy as np
import torch

_TORCHVISION_SCHEMAS = {
    'nms': '(Tensor dets, Tensor scores, float iou_threshold) -> Tensor',
    'qnms': '(Tensor dets, Tensor scores, float iou_threshold) -> Tensor',
}


def _define_torchvision_schemas():
    """Only for a CUDA torchvision wheel beside a CPU torch: where torchvision's C++ library loads,
    defining its schemas first would make that load abort on a duplicate registration."""
    try:
        torchvision_version = importlib.metadata.version('torchvision')
    except importlib.metadata.PackageNotFoundError:
        return
    if torch.version.cuda is not None or '+cpu' in torchvision_version:
        return
    for name, schema in _TORCHVISION_SCHEMAS.items():
        try:
            torch.library.define(f'torchvision::{name}', schema)
        except RuntimeError:  # already defined (torchvision's C++ library loaded, or a second call)
            pass


def safe_checkpoint_globals() -> list:
    """Types allowed when loading checkpoints with weights_only=True: the official Vim files store
    `args` as an argparse.Namespace; mmengine stores HistoryBuffer, numpy scalars and dtypes."""
    from numpy._core import multiarray  # numpy >= 2 (pinned); pickles name this module
    allowed = [argparse.Namespace, collections.OrderedDict, np.dtype, np.ndarray,
               multiarray._reconstruct, multiarray.scalar]
    allowed += [type(np.dtype(t)) for t in ('float64', 'float32', 'int64', 'int32', 'bool')]
    try:
        from mmengine.logging.history_buffer import HistoryBuffer
        allowed.append(HistoryBuffer)
    except ImportError:
        pass
    return allowed


def _pickle_history_buffer_without_functions():
    try:
        from mmengine.logging.history_buffer import HistoryBuffer
    except ImportError:
        return
    data_keys = ('max_length', '_log_history', '_count_history')
    copyreg.pickle(HistoryBuffer, lambda buffer: (HistoryBuffer, (), {k: buffer.__dict__[k] for k in data_keys}))


def _load_local_checkpoints_safely():
    from mmengine.runner.checkpoint import CheckpointLoader

    from .checkpoint import load_from_local_safely
    CheckpointLoader.register_scheme(prefixes='', loader=load_from_local_safely, force=True)


def apply():
    _define_torchvision_schemas()
    _pickle_history_buffer_without_functions()
    _load_local_checkpoints_safely()
    torch.serialization.add_safe_globals(safe_checkpoint_globals())
