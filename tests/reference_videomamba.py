"""Independent float64 reference of the official VideoMamba forward (image and video models).

Written from ``shared/docs/videomamba_reference.md`` only and, like its sibling ``reference_vim.py``
(whose per-branch Mamba maths, RMSNorm and official Vim key layout it reuses: VideoMamba keeps Vim's
key names, shapes and branch maths), it imports nothing from ``mtr_mm``. The differences from Vim
are written out here, literally:

- the class token sits at the FRONT (index 0) and its position-embedding row is row 0;
- the mixer SUMS the forward and the flipped backward branch (no division by two);
- video: every frame is patch-embedded on its own (tubelet of one frame: a Conv3d kernel (1, p, p)
  equals a 2-D conv per frame), tokens are frame-major, token (t, h, w) gets
  ``pos_embed[1 + h*W + w] + temporal_pos_embedding[t]``, the class token gets ``pos_embed[0]``.

Checkpoint layouts: image files keep the weights under 'model' (the self-distilled M/B add
``distill_head.*``), video files are bare state dicts with ``temporal_pos_embedding`` after
``pos_embed`` and a 5-D ``patch_embed.proj.weight``.
"""
from collections import OrderedDict
from typing import Dict

import torch
import torch.nn.functional as F

from reference_vim import (_branch_params, _depth, _layer_params, _normal, official_state_dict, reference_branch,
                           reference_rms_norm)


def videomamba_state_dict(embed_dim: int = 192, depth: int = 24, img_size: int = 224, num_classes: int = 1000,
                          num_frames: int = 0, distill: bool = False, seed: int = 0) -> 'OrderedDict[str, torch.Tensor]':
    """Random realistic weights in the official key order and shapes: the image model's
    (``num_frames=0``; ``distill`` adds the self-distillation head) or the video model's."""
    image = official_state_dict(embed_dim=embed_dim, depth=depth, img_size=img_size, num_classes=num_classes,
                                seed=seed)
    gen = torch.Generator().manual_seed(seed + 1)
    out = OrderedDict()
    for key, value in image.items():
        if key == 'patch_embed.proj.weight' and num_frames:
            value = value[:, :, None]  # (C, 3, 1, p, p): a tubelet of one frame
        out[key] = value
        if key == 'pos_embed' and num_frames:
            out['temporal_pos_embedding'] = _normal((1, num_frames, embed_dim), 0.1, gen)
    if distill:
        out['distill_head.0.weight'] = _normal((embed_dim, ), 1.0, gen)
        out['distill_head.1.weight'] = _normal((num_classes, embed_dim), 0.02, gen)
        out['distill_head.1.bias'] = _normal((num_classes, ), 0.02, gen)
    return out


def reference_mixer_sum(h: torch.Tensor, lp: Dict[str, torch.Tensor]) -> torch.Tensor:
    """VideoMamba's bimamba v2 mixer: out_proj(y_forward + flip(y_backward)), no /2."""
    E = lp['mixer.in_proj.weight'].shape[0] // 2
    xz = h @ lp['mixer.in_proj.weight'].t()
    x, z = xz[..., :E], xz[..., E:]
    y_f = reference_branch(x, z, _branch_params(lp, backward=False))
    y_b = reference_branch(x.flip(1), z.flip(1), _branch_params(lp, backward=True))
    return (y_f + y_b.flip(1)) @ lp['mixer.out_proj.weight'].t()


def reference_videomamba_forward(state_dict: Dict[str, torch.Tensor], inputs: torch.Tensor,
                                 dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Logits of the official VideoMamba classifier: images (B, 3, H, W) or clips (B, 3, T, H, W),
    patch 16 / stride 16 read from the weights, position embeddings at their stored size."""
    sd = {k: v.detach().to(dtype) for k, v in state_dict.items() if not k.startswith('distill_head.')}
    x = inputs.detach().to(dtype)
    video = x.dim() == 5
    if not video:
        x = x[:, :, None]  # one frame
    weight = sd['patch_embed.proj.weight']
    weight = weight[:, :, 0] if weight.dim() == 5 else weight
    patch = weight.shape[-1]
    frames = []
    for t in range(x.shape[2]):  # each frame on its own, row-major patches
        f = F.conv2d(x[:, :, t], weight, sd['patch_embed.proj.bias'], stride=patch)
        frames.append(f.flatten(2).transpose(1, 2) + sd['pos_embed'][:, 1:])
        if video:
            frames[-1] = frames[-1] + sd['temporal_pos_embedding'][:, t:t + 1]
    cls = (sd['cls_token'] + sd['pos_embed'][:, :1]).expand(x.shape[0], -1, -1)
    hidden = torch.cat([cls] + frames, dim=1)  # [cls, frame 0, frame 1, ...]
    residual = None
    for i in range(_depth(sd)):
        lp = _layer_params(sd, i)
        residual = hidden if residual is None else residual + hidden
        hidden = reference_mixer_sum(reference_rms_norm(residual, lp['norm.weight']), lp)
    tokens = reference_rms_norm(residual + hidden, sd['norm_f.weight'])
    return tokens[:, 0] @ sd['head.weight'].t() + sd['head.bias']
