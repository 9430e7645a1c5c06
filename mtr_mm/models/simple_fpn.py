"""The simple feature pyramid of ViTDet (Li et al., ECCV 2022): a multi-scale pyramid for a
detector built from the ONE stride-16 map of a plain (non-hierarchical) backbone.

Per scale s, the input map (C channels) is resampled to stride 16 / s:
- s = 4: deconv 2x2 (C -> C/2), norm, GELU, deconv 2x2 (C/2 -> C/4);
- s = 2: deconv 2x2 (C -> C/2);
- s = 1: identity;
- s = 0.5: 2x2 max pooling;
then a 1x1 and a 3x3 conv, each followed by the norm, project to ``out_channels``. With
``num_outs = len(scales) + 1`` an extra coarsest level is taken from the last one by a stride-2
subsampling (1x1 max pooling), the P6 that RPN anchors of stride 64 use.
"""
from typing import Sequence, Tuple

import torch.nn.functional as F
from mmcv.cnn import ConvModule, build_norm_layer
from mmengine.model import BaseModule
from torch import Tensor, nn

SCALES = (4, 2, 1, 0.5)


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of a (B, C, H, W) map (ViTDet's norm), as mmcv norm type 'LN2d'."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class SimpleFeaturePyramid(BaseModule):
    """Args:
        in_channels: channels of the backbone map.
        out_channels: channels of every pyramid level.
        scales: resampling factor of each level, a subset of (4, 2, 1, 0.5), finest first.
        num_outs: ``len(scales)``, or one more for the extra max-pooled level.
        norm_cfg: mmcv norm config after the deconv and each conv ('LN2d' as in ViTDet, or 'GN').
    """

    def __init__(self, in_channels: int, out_channels: int = 256, scales: Sequence[float] = SCALES,
                 num_outs: int = 5, norm_cfg: dict = dict(type='LN2d', eps=1e-6), init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        if any(s not in SCALES for s in scales):
            raise ValueError(f'SimpleFeaturePyramid: scales {list(scales)} must be taken from {list(SCALES)}')
        if num_outs not in (len(scales), len(scales) + 1):
            raise ValueError(f'SimpleFeaturePyramid: num_outs={num_outs} must be {len(scales)} or '
                             f'{len(scales) + 1} (one extra max-pooled level)')
        self.scales, self.num_outs = list(scales), num_outs
        self.resamplers = nn.ModuleList()
        self.lateral_convs = nn.ModuleList()
        self.output_convs = nn.ModuleList()
        for scale in self.scales:
            resampler, channels = self._resampler(scale, in_channels, norm_cfg)
            self.resamplers.append(resampler)
            self.lateral_convs.append(ConvModule(channels, out_channels, 1, norm_cfg=norm_cfg, act_cfg=None))
            self.output_convs.append(ConvModule(out_channels, out_channels, 3, padding=1, norm_cfg=norm_cfg,
                                                act_cfg=None))

    @staticmethod
    def _resampler(scale: float, channels: int, norm_cfg: dict) -> Tuple[nn.Module, int]:
        if scale == 4:
            return nn.Sequential(
                nn.ConvTranspose2d(channels, channels // 2, 2, stride=2),
                build_norm_layer(norm_cfg, channels // 2)[1],
                nn.GELU(),
                nn.ConvTranspose2d(channels // 2, channels // 4, 2, stride=2)), channels // 4
        if scale == 2:
            return nn.ConvTranspose2d(channels, channels // 2, 2, stride=2), channels // 2
        if scale == 1:
            return nn.Identity(), channels
        return nn.MaxPool2d(2, stride=2), channels

    def forward(self, inputs: Sequence[Tensor]) -> Tuple[Tensor, ...]:
        """``inputs``: the backbone outputs; the pyramid is built from the last (stride-16) map."""
        x = inputs[-1]
        outs = [output(lateral(resample(x)))
                for resample, lateral, output in zip(self.resamplers, self.lateral_convs, self.output_convs)]
        if self.num_outs > len(outs):
            outs.append(F.max_pool2d(outs[-1], kernel_size=1, stride=2))
        return tuple(outs)
