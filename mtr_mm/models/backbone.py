"""VimBackbone: the OpenMMLab face of :class:`VisionMamba`, registered in mmpretrain, mmseg and
mmdet. It only chooses what to read from the one Vim forward:

- ``out_type='cls'`` (classification): the class feature after the final norm, at the class
  token's tracked index -> ``(B, C)``, for mmpretrain's LinearClsHead;
- ``out_type='featmap'`` (segmentation, detection): no class token; at every ``out_indices`` layer
  a full-resolution ``(B, C, H, W)`` map, restored from the reduced sequence with the reduction's
  restoration mode. ``feature='hidden'`` reads the mixer output (the Vim segmentation recipe),
  ``'block'`` the block output residual + hidden (the detection recipe).

:class:`VideoMambaBackbone` is the same backbone for mmaction2's recognizers: a VideoMamba video
model reading clips ``(B, 3, T, H, W)`` and returning the class feature ``(B, C)`` as one tensor,
the input TimeSformerHead takes.
"""
from typing import Optional, Sequence

from mmengine.logging import print_log
from mmengine.model import BaseModule
from torch import Tensor, nn

from .. import checkpoint as ckpt
from ..reduction.restore import restore_tokens
from ..reduction.state import TokenState
from .vim import RMSNorm, VisionMamba, vim_arch


class VimBackbone(BaseModule):
    """Args:
        arch: 'tiny' | 'small' | 'base' (Vim), 'videomamba_tiny' | 'videomamba_small' |
            'videomamba_middle' | 'videomamba_base' (VideoMamba: front class token, summed scan
            directions); embed_dims and depth per size, override with ``embed_dims``/``depth``.
        img_size: the size the position embedding is stored for (other sizes are resized on the fly).
        num_frames, tubelet_size: video models (VideoMamba): frames per clip and per token; 0 frames
            for images.
        patch_size, stride: patch embedding (stride 8 for the fine-tuned "stride 8" models).
        out_type: 'cls' or 'featmap' (see the module docstring).
        out_indices: layers whose features dense models output (negative counts from the end).
        feature: 'hidden' or 'block' for dense outputs.
        out_norm: add an RMSNorm per dense output.
        reduction: token reduction config, see :class:`mtr_mm.reduction.TokenReduction`.
        frozen: freeze every backbone parameter (fine-tune only the dense head).
        cuda_graph: replay the inference forward as CUDA graphs on GPU (see ``VisionMamba``; the
            ``--cuda-graph`` switch of tools/test.py).
        init_cfg: ``dict(type='Pretrained', checkpoint=PATH)`` accepts official Vim checkpoints
            (classification weights for dense models: pos embed adapted) and this project's own (its
            classifiers' for dense models adapted alike, e.g. the demo Vim-T starting a segmenter).
    """

    def __init__(self, arch: str = 'tiny', img_size: int = 224, patch_size: int = 16, stride: int = 16,
                 embed_dims: Optional[int] = None, depth: Optional[int] = None, out_type: str = 'cls',
                 out_indices: Sequence[int] = (-1, ), feature: str = 'hidden', out_norm: bool = False,
                 reduction: Optional[dict] = None, drop_path_rate: float = 0., frozen: bool = False,
                 cuda_graph: bool = False, num_frames: int = 0, tubelet_size: int = 1,
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        if out_type not in ('cls', 'featmap'):
            raise ValueError(f"out_type must be 'cls' or 'featmap', got {out_type!r}")
        if out_type == 'featmap' and num_frames:
            raise ValueError('out_type="featmap" gives 2-D maps of image models; video models (num_frames) output "cls"')
        if feature not in ('hidden', 'block'):
            raise ValueError(f"feature must be 'hidden' (mixer output) or 'block' (residual + hidden), got {feature!r}")
        reactivate_at = reduction.get('reactivate_at') if isinstance(reduction, dict) else \
            getattr(reduction, 'reactivate_at', None)
        if out_type == 'cls' and reactivate_at is not None:
            raise ValueError(f"reactivate_at={reactivate_at} needs a dense backbone (out_type='featmap'): "
                             'it restores the full grid for later feature maps, but a classifier reads only the class '
                             'token. Remove model.backbone.reduction.reactivate_at.')
        overrides = {k: v for k, v in dict(embed_dims=embed_dims, depth=depth).items() if v is not None}
        self.vim = VisionMamba(img_size=img_size, patch_size=patch_size, stride=stride, num_classes=0,
                               with_cls_token=out_type == 'cls', drop_path_rate=drop_path_rate,
                               reduction=reduction, cuda_graph=cuda_graph, num_frames=num_frames,
                               tubelet_size=tubelet_size, **vim_arch(arch, **overrides))
        self.out_type, self.feature = out_type, feature
        depth = self.vim.depth
        if any(not -depth <= i < depth for i in out_indices):
            raise ValueError(f'out_indices {list(out_indices)} out of range for depth {depth}')
        self.out_indices = sorted(i % depth for i in out_indices)
        if len(set(self.out_indices)) != len(self.out_indices):
            raise ValueError(f'out_indices {list(out_indices)} name a layer twice (negative indices count from the '
                             f'end: layers {self.out_indices} for depth {depth}); the neck expects distinct maps')
        if out_type == 'featmap':
            self.vim.restored_after = tuple(self.out_indices)
        self.out_norms = nn.ModuleList(RMSNorm(self.vim.embed_dims) for _ in self.out_indices) if out_norm else None
        self.frozen = frozen
        if frozen:
            self.vim.requires_grad_(False)

    @property
    def reduction(self):
        return self.vim.reduction

    def init_weights(self):
        if not (self.init_cfg and self.init_cfg.get('type') == 'Pretrained'):
            return super().init_weights()
        path = self.init_cfg['checkpoint']
        state_dict = ckpt.drop_distill_head(ckpt.extract_state_dict(ckpt.load_file(path)))
        if ckpt.is_official_vim(state_dict):
            if self.out_type == 'featmap':
                state_dict = ckpt.official_to_dense(state_dict, self.vim.pos_grid, self.vim.cls_token_position)
            state_dict = {k: v for k, v in state_dict.items() if not k.startswith('head.')}
        else:  # this project's checkpoint of a whole model
            prefix = self.init_cfg.get('prefix', 'backbone.') + 'vim.'
            state_dict = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
            if not state_dict:
                raise ckpt.CheckpointError(f'{path!r} holds neither official Vim weights nor keys under {prefix!r}')
            if self.out_type == 'featmap' and 'cls_token' in state_dict and not self.vim.with_cls_token:
                # this project's classifier (e.g. the demo Vim-T) starting a dense model: adapted as an official one
                state_dict = ckpt.official_to_dense(state_dict, self.vim.pos_grid, self.vim.cls_token_position)
        ckpt.load_into(self.vim, state_dict, f'the Vim backbone ({path})')
        print_log(f'loaded Vim backbone weights from {path}', logger='current')

    def train(self, mode: bool = True):
        super().train(mode)
        if self.frozen:  # frozen weights also keep inference behaviour (no drop path)
            self.vim.eval()
        return self

    def dense_feature(self, state: TokenState) -> Tensor:
        tokens = state.hidden if self.feature == 'hidden' else state.residual + state.hidden
        stale = state.stale_hidden
        if stale is not None and self.feature == 'block':
            stale = state.stale_residual + state.stale_hidden
        mode = self.reduction.restore if self.reduction is not None else 'unmerge'
        return restore_tokens(state, tokens, mode, stale)

    def forward(self, images: Tensor):
        return self.vim.run_graphed('backbone', self.features, images)

    def features(self, images: Tensor):
        if self.out_type == 'cls':
            return (self.vim.forward_features(images), )
        outs = []

        def collect(index: int, layer_state: TokenState):
            if index in self.out_indices:
                outs.append(self.dense_feature(layer_state))

        state = self.vim.forward_blocks(self.vim.embed(images), collect)
        height, width = state.grid_size
        maps = []
        for i, tokens in enumerate(outs):
            if self.out_norms is not None:
                tokens = self.out_norms[i](tokens)
            maps.append(tokens.transpose(1, 2).reshape(tokens.shape[0], -1, height, width).contiguous())
        return tuple(maps)


class VideoMambaBackbone(VimBackbone):
    """A VideoMamba video model for mmaction2's ``Recognizer3D``: clips ``(B, 3, T, H, W)`` (the
    recognizer folds views into B) -> the normed class feature ``(B, C)``, one tensor, for
    ``TimeSformerHead``. Arguments as :class:`VimBackbone`, with video defaults."""

    def __init__(self, arch: str = 'videomamba_tiny', num_frames: int = 8, **kwargs):
        if kwargs.get('out_type', 'cls') != 'cls':
            raise ValueError('VideoMambaBackbone outputs the class feature (out_type="cls")')
        super().__init__(arch=arch, num_frames=num_frames, **kwargs)

    def forward(self, clips: Tensor) -> Tensor:
        return super().forward(clips)[0]
