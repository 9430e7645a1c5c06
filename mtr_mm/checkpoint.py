"""Loading official hustvl/Vim and OpenGVLab/VideoMamba checkpoints and the project's own (mmengine) ones.

Official Vim files are `torch.save` dicts with the weights under 'model' (training files add
'model_ema', optimizer state and 'args' as an argparse.Namespace). VideoMamba image files keep the
weights under 'model' too, its video files are bare state dicts; both use Vim's key names (video
adds ``temporal_pos_embedding`` and a 5-D ``patch_embed.proj.weight``), and its self-distilled
image models (M, B) carry a ``distill_head.*`` that inference never uses: it is dropped, with a log
line. Files are read with ``weights_only=True`` and an allow-list (mtr_mm.compat), never blind
unpickling unless the caller says the file is trusted. The key names do not tell Vim from
VideoMamba: the config does (its arch), and a strict load checks every name and shape.
"""
import os
import os.path as osp
from collections import OrderedDict
from typing import Dict, Optional

import torch
from mmengine.logging import print_log
from torch import Tensor, nn

from .compat import safe_checkpoint_globals

STATE_DICT_KEYS = ('state_dict', 'model', 'model_ema')
OFFICIAL_MARKERS = ('patch_embed.proj.weight', 'layers.0.mixer.in_proj.weight', 'norm_f.weight')


class CheckpointError(ValueError):
    pass


def load_file(path: str, trusted: bool = False, map_location='cpu') -> dict:
    """torch.load, safe by default. ``trusted=True`` unpickles anything (your own files)."""
    if osp.isfile(path) and osp.getsize(path) == 0:
        raise CheckpointError(f'checkpoint {path!r} is an empty file (0 bytes): an interrupted download or copy? '
                              'Fetch it again.')
    # Re-assert the allow-list: torch's `safe_globals` context manager, used by other code, removes
    # the types it names from the process-wide list when it exits, ours included.
    torch.serialization.add_safe_globals(safe_checkpoint_globals())
    try:
        return torch.load(path, map_location=map_location, weights_only=not trusted)
    except FileNotFoundError:
        raise CheckpointError(f'checkpoint {path!r} does not exist') from None
    except Exception as error:  # torch raises UnpicklingError or RuntimeError
        if trusted:
            raise CheckpointError(f'{path!r} is not a readable torch checkpoint: {error}') from error
        first_line = (str(error).splitlines() or [type(error).__name__])[0]
        raise CheckpointError(
            f'{path!r} could not be loaded safely (weights_only=True): {first_line}. '
            'If the file is not a checkpoint, pass the right file; if it is one you trust, convert it with '
            '`python tools/convert_vim_ckpt.py IN OUT --trusted`.') from error


def extract_state_dict(checkpoint: dict, key: Optional[str] = None) -> Dict[str, Tensor]:
    """The weights inside a checkpoint dict: ``key`` or the first of 'state_dict', 'model',
    'model_ema' present (official eval uses 'model'), else the dict itself; 'module.' prefixes of
    DataParallel/DDP checkpoints are stripped."""
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f'expected a checkpoint dict, got {type(checkpoint).__name__}')
    if key is not None:
        if key not in checkpoint:
            raise CheckpointError(f'checkpoint has no {key!r}; it has {sorted(checkpoint)}')
        state_dict = checkpoint[key]
    else:
        found = [k for k in STATE_DICT_KEYS if k in checkpoint]
        state_dict = checkpoint[found[0]] if found else checkpoint
    if not all(isinstance(v, Tensor) for v in state_dict.values()):
        raise CheckpointError(f'no weights found: the checkpoint keys are {sorted(checkpoint)[:10]}')
    return OrderedDict((k[len('module.'):] if k.startswith('module.') else k, v) for k, v in state_dict.items())


def is_official_vim(state_dict: Dict[str, Tensor]) -> bool:
    """Official Vim or VideoMamba weights (the same key names)."""
    return all(k in state_dict for k in OFFICIAL_MARKERS)


def drop_distill_head(state_dict: Dict[str, Tensor]) -> Dict[str, Tensor]:
    """Without VideoMamba's ``distill_head.*`` (self-distillation training only), as its own
    evaluation loads them."""
    dropped = [k for k in state_dict if k.startswith('distill_head.')]
    if not dropped:
        return state_dict
    print_log(f'checkpoint: dropped {len(dropped)} distillation-head weights ({", ".join(dropped)}), '
              'used only in training', logger='current')
    return OrderedDict((k, v) for k, v in state_dict.items() if not k.startswith('distill_head.'))


def official_to_classifier(state_dict: Dict[str, Tensor], head_prefix: str = 'head.fc.') -> 'OrderedDict[str, Tensor]':
    """Official keys -> a task model's keys: backbone.vim.*, and the official head under
    ``head_prefix`` (mmpretrain's ImageClassifier 'head.fc.', mmaction2's recognizers 'cls_head.fc_cls.')."""
    return OrderedDict((head_prefix + k[len('head.'):] if k.startswith('head.') else 'backbone.vim.' + k, v)
                       for k, v in state_dict.items())


def official_to_dense(state_dict: Dict[str, Tensor], grid_size: tuple,
                      cls_token_position: str = 'middle') -> 'OrderedDict[str, Tensor]':
    """Official classification keys -> a dense backbone without cls token: drop the head and the
    cls token, drop the pos-embed row of the cls token (Vim's middle one: num_patches // 2, not
    row 0; VideoMamba's front one: row 0) and resize the grid bicubically to ``grid_size``."""
    from .models.vim import cls_sequence_index, resize_pos_embed
    pos_embed = state_dict['pos_embed']
    num_patches = pos_embed.shape[1] - ('cls_token' in state_dict)
    side = int(round(num_patches**0.5))
    if side * side != num_patches:
        raise CheckpointError(f'pos_embed has {num_patches} grid rows, not a square grid')
    if 'cls_token' in state_dict:
        row = cls_sequence_index(num_patches, cls_token_position)
        pos_embed = torch.cat([pos_embed[:, :row], pos_embed[:, row + 1:]], dim=1)
    resized = resize_pos_embed(pos_embed, (side, side), grid_size)
    out = OrderedDict((k, v) for k, v in state_dict.items() if not k.startswith(('head.', 'cls_token')))
    out['pos_embed'] = resized
    return out


def check_compatible(module: nn.Module, state_dict: Dict[str, Tensor], what: str):
    """Raise a CheckpointError naming missing/unexpected keys and size mismatches."""
    own = module.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    wrong = [f'{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}'
             for k in own if k in state_dict and state_dict[k].shape != own[k].shape]
    if missing or unexpected or wrong:
        lines = [f'checkpoint does not fit {what}:']
        for name, items in (('missing', missing), ('unexpected', unexpected), ('size mismatch', wrong)):
            if items:
                lines.append(f'  {name} ({len(items)}): ' + ', '.join(items[:6]) + (' ...' if len(items) > 6 else ''))
        lines.append('Check that the config matches the checkpoint (arch tiny/small/base, patch stride, task).')
        raise CheckpointError('\n'.join(lines))


def check_finite(state_dict: Dict[str, Tensor], what: str):
    """Raise a CheckpointError naming the weights that hold NaN or inf (they evaluate to nonsense)."""
    bad = [k for k, v in state_dict.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise CheckpointError(f'checkpoint for {what} holds NaN or inf in {len(bad)} tensors ('
                              + ', '.join(bad[:6]) + (' ...' if len(bad) > 6 else '')
                              + '): a diverged training run or a damaged file. Use an earlier checkpoint.')


def load_into(module: nn.Module, state_dict: Dict[str, Tensor], what: str):
    check_compatible(module, state_dict, what)
    check_finite(state_dict, what)
    module.load_state_dict(state_dict, strict=True)


# Where a task model keeps the linear classifier that the official `head` becomes.
CLASSIFIER_HEADS = (('head', 'fc'), ('cls_head', 'fc_cls'))  # mmpretrain ImageClassifier, mmaction2 recognizers


def load_model_checkpoint(model: nn.Module, path: str, trusted: bool = False) -> nn.Module:
    """Load a whole task model (mmpretrain / mmaction2 / mmseg / mmdet) from ``path``: an official
    Vim or VideoMamba classification checkpoint (converted on the fly) or one saved by this
    project's tools."""
    state_dict = drop_distill_head(extract_state_dict(load_file(path, trusted)))
    if is_official_vim(state_dict):
        heads = [f'{head}.{fc}.' for head, fc in CLASSIFIER_HEADS
                 if isinstance(getattr(getattr(model, head, None), fc, None), nn.Linear)]
        if not heads:
            raise CheckpointError(
                f'{path!r} is an official Vim/VideoMamba classification checkpoint, but this is a '
                f'{type(model).__name__} without a classification head: its decode/detection head would stay '
                "untrained. Load the backbone only (model.backbone.init_cfg=dict(type='Pretrained', "
                f"checkpoint='{path}')) and fine-tune with tools/train.py.")
        state_dict = official_to_classifier(state_dict, heads[0])
    # Buffers that are not part of checkpoints (non-persistent) never appear in state_dict().
    load_into(model, state_dict, f'{type(model).__name__} ({path})')
    return model


def load_from_local_safely(filename: str, map_location=None) -> dict:
    """mmengine's loader for local files (every ``init_cfg`` Pretrained, ``load_from``, ``resume``),
    replaced in mtr_mm.compat: the same safe load as ours, so TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 (which
    turns torch.load's default unsafe) cannot make a config's checkpoint run pickled code."""
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'{filename} can not be found.')
    return load_file(filename, map_location=map_location or 'cpu')

