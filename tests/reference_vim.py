"""Independent reference implementation of the official Vim classification forward.

Written from the facts in ``shared/docs/vim_reference.md`` only; it deliberately imports
nothing from ``mtr_mm`` so that it can serve as ground truth for the project's model.
Everything is plain, literal and slow (a per-timestep Python loop for the selective scan,
an explicit tap loop for the causal depthwise conv): readability over speed.

Public functions
----------------
official_state_dict_shapes(...)  -> OrderedDict[key, torch.Size]   (official keys / order / shapes)
official_state_dict(...)         -> OrderedDict[key, Tensor]        (random, realistic, seeded, fp32)
official_model_name(embed_dim, stride) -> str
perturbed_copy(state_dict, seed, scale) -> OrderedDict             (used for 'model_ema')
save_official_checkpoint(path, state_dict, with_args=True, with_ema=True, ...)
load_official_checkpoint(path) -> dict                              (trusted-file helper for tests)
reference_rms_norm(x, weight, eps=1e-5)
reference_causal_conv1d(x, weight, bias)                            x: (B, L, E)
reference_selective_scan(u, delta, A, B, C)                          plain sequential loop
reference_branch(x, z, params)                                       one mamba branch
reference_mixer(h, layer_params, ...)                               bimamba v2 mixer
reference_forward_features(state_dict, images, dtype, stride) -> dict
reference_forward(state_dict, images, dtype=torch.float64, stride=None) -> logits
reference_parameter_count(state_dict) -> int

Official state_dict key order (derived from the module registration order of the official
model: a module's own parameters first, then its children in registration order):
  cls_token, pos_embed, patch_embed.proj.{weight,bias}, head.{weight,bias},
  layers.{i}.mixer.{A_log, D, A_b_log, D_b, in_proj.weight, conv1d.weight, conv1d.bias,
                    x_proj.weight, dt_proj.weight, dt_proj.bias, conv1d_b.weight, conv1d_b.bias,
                    x_proj_b.weight, dt_proj_b.weight, dt_proj_b.bias, out_proj.weight},
  layers.{i}.norm.weight, ..., norm_f.weight
"""

from __future__ import annotations

import argparse
import math
from collections import OrderedDict
from typing import Dict, List, Optional

import torch
import torch.nn.functional as F

RMS_EPS = 1e-5

# Per-layer key suffixes in official state_dict order (17 per layer).
LAYER_KEYS = (
    'mixer.A_log',
    'mixer.D',
    'mixer.A_b_log',
    'mixer.D_b',
    'mixer.in_proj.weight',
    'mixer.conv1d.weight',
    'mixer.conv1d.bias',
    'mixer.x_proj.weight',
    'mixer.dt_proj.weight',
    'mixer.dt_proj.bias',
    'mixer.conv1d_b.weight',
    'mixer.conv1d_b.bias',
    'mixer.x_proj_b.weight',
    'mixer.dt_proj_b.weight',
    'mixer.dt_proj_b.bias',
    'mixer.out_proj.weight',
    'norm.weight',
)


# ---------------------------------------------------------------------------
# state_dict construction
# ---------------------------------------------------------------------------
def _grid(img_size: int, patch_size: int, stride: int) -> int:
    return (img_size - patch_size) // stride + 1


def official_state_dict_shapes(embed_dim: int = 192,
                               depth: int = 24,
                               d_state: int = 16,
                               expand: int = 2,
                               d_conv: int = 4,
                               patch_size: int = 16,
                               stride: int = 16,
                               img_size: int = 224,
                               num_classes: int = 1000,
                               in_chans: int = 3) -> 'OrderedDict[str, torch.Size]':
    """Official key names, order and shapes of a Vim classification state_dict."""
    C = embed_dim
    E = expand * C
    N = d_state
    R = math.ceil(C / 16)
    K = d_conv
    g = _grid(img_size, patch_size, stride)
    M = g * g
    shapes: 'OrderedDict[str, torch.Size]' = OrderedDict()
    shapes['cls_token'] = torch.Size((1, 1, C))
    shapes['pos_embed'] = torch.Size((1, M + 1, C))
    shapes['patch_embed.proj.weight'] = torch.Size((C, in_chans, patch_size, patch_size))
    shapes['patch_embed.proj.bias'] = torch.Size((C, ))
    shapes['head.weight'] = torch.Size((num_classes, C))
    shapes['head.bias'] = torch.Size((num_classes, ))
    per_layer = {
        'mixer.A_log': (E, N),
        'mixer.D': (E, ),
        'mixer.A_b_log': (E, N),
        'mixer.D_b': (E, ),
        'mixer.in_proj.weight': (2 * E, C),
        'mixer.conv1d.weight': (E, 1, K),
        'mixer.conv1d.bias': (E, ),
        'mixer.x_proj.weight': (R + 2 * N, E),
        'mixer.dt_proj.weight': (E, R),
        'mixer.dt_proj.bias': (E, ),
        'mixer.conv1d_b.weight': (E, 1, K),
        'mixer.conv1d_b.bias': (E, ),
        'mixer.x_proj_b.weight': (R + 2 * N, E),
        'mixer.dt_proj_b.weight': (E, R),
        'mixer.dt_proj_b.bias': (E, ),
        'mixer.out_proj.weight': (C, E),
        'norm.weight': (C, ),
    }
    assert tuple(per_layer) == LAYER_KEYS
    for i in range(depth):
        for suffix in LAYER_KEYS:
            shapes[f'layers.{i}.{suffix}'] = torch.Size(per_layer[suffix])
    shapes['norm_f.weight'] = torch.Size((C, ))
    return shapes


def _uniform(shape, bound, gen):
    return (torch.rand(shape, generator=gen, dtype=torch.float32) * 2 - 1) * bound


def _normal(shape, std, gen):
    return torch.randn(shape, generator=gen, dtype=torch.float32) * std


def _inv_softplus(y: torch.Tensor) -> torch.Tensor:
    # softplus(x) = y  <=>  x = y + log(1 - exp(-y))
    return y + torch.log(-torch.expm1(-y))


def official_state_dict(embed_dim: int = 192,
                        depth: int = 24,
                        d_state: int = 16,
                        expand: int = 2,
                        d_conv: int = 4,
                        patch_size: int = 16,
                        stride: int = 16,
                        img_size: int = 224,
                        num_classes: int = 1000,
                        seed: int = 0,
                        meta: bool = False) -> 'OrderedDict[str, torch.Tensor]':
    """A random fp32 state_dict with exactly the official keys, order and shapes.

    Values are seeded (``torch.Generator().manual_seed(seed)``, drawn in key order) and
    realistic: mamba-like initialisation plus noise so that every parameter matters and the
    forward/backward-branch parameters are all DIFFERENT from each other (a model that
    mixes up ``A_log``/``A_b_log``, ``D``/``D_b``, ``conv1d``/``conv1d_b`` ... gives a
    different output). In particular ``A_log = log(1..N) + noise`` and ``D = 1 + noise``
    rather than exact mamba init (exact init would make A_log == A_b_log and D == D_b).

    ``meta=True`` returns meta-device tensors (shapes only; for parameter counting).
    """
    shapes = official_state_dict_shapes(embed_dim, depth, d_state, expand, d_conv,
                                        patch_size, stride, img_size, num_classes)
    if meta:
        return OrderedDict((k, torch.empty(s, device='meta')) for k, s in shapes.items())

    gen = torch.Generator().manual_seed(seed)
    C = embed_dim
    E = expand * C
    N = d_state
    R = math.ceil(C / 16)
    K = d_conv
    sd: 'OrderedDict[str, torch.Tensor]' = OrderedDict()
    for key, shape in shapes.items():
        suffix = key.split('.', 2)[-1] if key.startswith('layers.') else key
        if key in ('cls_token', 'pos_embed'):
            v = _normal(shape, 0.02, gen)
        elif key == 'patch_embed.proj.weight':
            v = _normal(shape, 0.5 / math.sqrt(shape[1] * shape[2] * shape[3]), gen)
        elif key == 'patch_embed.proj.bias':
            v = _uniform(shape, 0.02, gen)
        elif key == 'head.weight':
            v = _normal(shape, 1.0 / math.sqrt(C), gen)
        elif key == 'head.bias':
            v = _uniform(shape, 0.01, gen)
        elif key == 'norm_f.weight' or suffix == 'norm.weight':
            v = 1.0 + _normal(shape, 0.1, gen)
        elif suffix in ('mixer.A_log', 'mixer.A_b_log'):
            base = torch.log(torch.arange(1, N + 1, dtype=torch.float32)).repeat(E, 1)
            v = base + _normal(shape, 0.1, gen)
        elif suffix in ('mixer.D', 'mixer.D_b'):
            v = 1.0 + _normal(shape, 0.1, gen)
        elif suffix == 'mixer.in_proj.weight':
            v = _uniform(shape, 1.0 / math.sqrt(C), gen)
        elif suffix in ('mixer.conv1d.weight', 'mixer.conv1d_b.weight',
                        'mixer.conv1d.bias', 'mixer.conv1d_b.bias'):
            v = _uniform(shape, 1.0 / math.sqrt(K), gen)  # depthwise: fan_in = K
        elif suffix in ('mixer.x_proj.weight', 'mixer.x_proj_b.weight'):
            v = _uniform(shape, 1.0 / math.sqrt(E), gen)
        elif suffix in ('mixer.dt_proj.weight', 'mixer.dt_proj_b.weight'):
            v = _uniform(shape, R**-0.5, gen)
        elif suffix in ('mixer.dt_proj.bias', 'mixer.dt_proj_b.bias'):
            # dt log-uniform in [1e-3, 1e-1], bias = softplus^-1(dt)
            r = torch.rand(shape, generator=gen, dtype=torch.float32)
            dt = torch.exp(r * (math.log(1e-1) - math.log(1e-3)) + math.log(1e-3))
            dt = dt.clamp(min=1e-4)
            v = _inv_softplus(dt)
        elif suffix == 'mixer.out_proj.weight':
            # 4x the default bound: each block then changes the residual stream by ~20%
            # (with the default bound only ~3%), so mixer bugs show up clearly in the logits
            v = _uniform(shape, 4.0 / math.sqrt(E), gen)
        else:  # pragma: no cover
            raise KeyError(key)
        assert v.shape == shape, (key, v.shape, shape)
        sd[key] = v.contiguous()
    return sd


def reference_parameter_count(state_dict: Dict[str, torch.Tensor]) -> int:
    """Total number of elements (all entries are parameters; the official model has no buffers)."""
    return int(sum(v.numel() for v in state_dict.values()))


# ---------------------------------------------------------------------------
# checkpoint file in the official training script's layout
# ---------------------------------------------------------------------------
def official_model_name(embed_dim: int = 192, stride: int = 16) -> str:
    size = {192: 'tiny', 384: 'small', 768: 'base'}.get(embed_dim, f'c{embed_dim}')
    s8 = '_stride8' if stride == 8 else ''
    tail = ('with_middle_cls_token_div2' if size == 'base' else 'with_midclstok_div2')
    return (f'vim_{size}_patch16{s8}_224_bimambav2_final_pool_mean_abs_pos_embed_{tail}')


def perturbed_copy(state_dict: Dict[str, torch.Tensor], seed: int = 12345,
                   scale: float = 0.01) -> 'OrderedDict[str, torch.Tensor]':
    """Same keys/order/shapes/dtypes, every float tensor + scale * N(0, 1) noise (seeded)."""
    gen = torch.Generator().manual_seed(seed)
    out: 'OrderedDict[str, torch.Tensor]' = OrderedDict()
    for k, v in state_dict.items():
        noise = torch.randn(v.shape, generator=gen, dtype=torch.float32).to(v.dtype)
        out[k] = (v.detach().clone() + scale * noise).contiguous()
    return out


def save_official_checkpoint(path,
                             state_dict: Dict[str, torch.Tensor],
                             with_args: bool = True,
                             with_ema: bool = True,
                             epoch: int = 299,
                             stride: Optional[int] = None,
                             ema_seed: int = 12345) -> dict:
    """Write ``path`` like the official training script (``torch.save`` of a dict).

    Layout (same key order as the official script): 'model', 'optimizer', 'lr_scheduler',
    'epoch', 'model_ema', 'scaler', 'args'.

    * 'model' holds ``state_dict`` (fp32 clones) -- this is what the official eval and the
      released ``vim_*_midclstok_*.pth`` files use.
    * 'model_ema' is a DIFFERENT, perturbed copy (noise 1e-2 on every tensor) so that a loader
      that picks 'model_ema' instead of 'model' is detectable by its outputs.
    * 'args' is an ``argparse.Namespace``: plain ``torch.load`` (weights_only=True by
      default in torch>=2.6) refuses the file unless Namespace is allow-listed.

    Returns the dict that was saved.
    """
    model = OrderedDict((k, v.detach().clone().contiguous()) for k, v in state_dict.items())
    ckpt = OrderedDict()
    ckpt['model'] = model
    ckpt['optimizer'] = {}
    ckpt['lr_scheduler'] = {}
    ckpt['epoch'] = int(epoch)
    if with_ema:
        ckpt['model_ema'] = perturbed_copy(model, seed=ema_seed, scale=0.01)
    ckpt['scaler'] = 'none'
    if with_args:
        C = model['cls_token'].shape[-1]
        if stride is None:
            stride = 8 if model['pos_embed'].shape[1] == 27 * 27 + 1 else 16
        ckpt['args'] = argparse.Namespace(
            model=official_model_name(C, stride),
            input_size=224,
            nb_classes=model['head.weight'].shape[0],
            batch_size=128,
            epochs=300,
            drop=0.0,
            drop_path=0.0 if C == 192 else 0.05,
            model_ema=with_ema,
            model_ema_decay=0.99996,
            model_ema_force_cpu=False,
            opt='adamw',
            lr=5e-4,
            weight_decay=0.05,
            sched='cosine',
            data_set='IMNET',
            data_path='/data/imagenet',
            output_dir='./output/vim',
            resume='',
            eval=False,
            if_amp=False,
            seed=0,
        )
    torch.save(dict(ckpt), path)
    return dict(ckpt)


def load_official_checkpoint(path) -> dict:
    """Load a TRUSTED official-layout file (allow-lists argparse.Namespace only)."""
    with torch.serialization.safe_globals([argparse.Namespace]):
        return torch.load(path, map_location='cpu', weights_only=True)


# ---------------------------------------------------------------------------
# forward pieces
# ---------------------------------------------------------------------------
def reference_rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float = RMS_EPS) -> torch.Tensor:
    """y = x * rsqrt(mean(x^2, -1) + eps) * weight (no bias)."""
    return x * torch.rsqrt((x * x).mean(dim=-1, keepdim=True) + eps) * weight


def _silu(x: torch.Tensor) -> torch.Tensor:
    return x * torch.sigmoid(x)


def _softplus(x: torch.Tensor) -> torch.Tensor:
    # log(1 + exp(x)), linear above 20 (same as the CUDA kernel and F.softplus defaults)
    return torch.where(x <= 20.0, torch.log1p(torch.exp(torch.clamp(x, max=20.0))), x)


def reference_causal_conv1d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Causal depthwise conv along L. x: (B, L, E), weight: (E, 1, K), bias: (E,).

    out[:, t, e] = bias[e] + sum_k weight[e, 0, k] * x[:, t - (K-1) + k, e]   (x[<0] = 0),
    i.e. F.conv1d(groups=E, padding=K-1) keeping the first L outputs.
    """
    Bsz, L, E = x.shape
    K = weight.shape[-1]
    w = weight[:, 0, :]  # (E, K)
    out = bias.expand(Bsz, L, E).clone()
    for k in range(K):
        shift = (K - 1) - k  # tap k reads x[t - shift]
        if shift >= L:
            continue
        if shift == 0:
            out = out + w[:, k] * x
        else:
            out[:, shift:, :] = out[:, shift:, :] + w[:, k] * x[:, :L - shift, :]
    return out


def reference_selective_scan(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor,
                             Bm: torch.Tensor, Cm: torch.Tensor) -> torch.Tensor:
    """Plain sequential selective scan (no D, no gate).

    u, delta: (B, L, E) with delta already soft-plussed; A: (E, N); Bm, Cm: (B, L, N).
        h_t = exp(delta_t * A) * h_{t-1} + delta_t * B_t * u_t ;  y_t = <h_t, C_t>
    Returns y: (B, L, E).
    """
    Bsz, L, E = u.shape
    N = A.shape[1]
    # discretisation for all steps at once (elementwise), the recurrence itself step by step
    dA = torch.exp(delta.unsqueeze(-1) * A)  # (B, L, E, N)
    dBu = delta.unsqueeze(-1) * Bm.unsqueeze(2) * u.unsqueeze(-1)  # (B, L, E, N)
    h = torch.zeros(Bsz, E, N, dtype=u.dtype, device=u.device)
    ys = []
    for t in range(L):
        h = dA[:, t] * h + dBu[:, t]
        ys.append((h * Cm[:, t].unsqueeze(1)).sum(dim=-1))  # (B, E)
    return torch.stack(ys, dim=1)


def reference_branch(x: torch.Tensor, z: torch.Tensor, p: Dict[str, torch.Tensor]) -> torch.Tensor:
    """One mamba branch. x, z: (B, L, E). p holds conv_w, conv_b, x_proj, dt_w, dt_b, A_log, D.

    Returns y = (scan + D*u) * silu(z): (B, L, E).
    """
    N = p['A_log'].shape[1]
    R = p['dt_w'].shape[1]
    u = _silu(reference_causal_conv1d(x, p['conv_w'], p['conv_b']))
    x_dbl = u @ p['x_proj'].t()  # (B, L, R + 2N)
    assert x_dbl.shape[-1] == R + 2 * N
    dt_low = x_dbl[..., :R]
    Bm = x_dbl[..., R:R + N]
    Cm = x_dbl[..., R + N:R + 2 * N]
    delta = dt_low @ p['dt_w'].t()  # (B, L, E), no bias here
    delta = _softplus(delta + p['dt_b'])
    A = -torch.exp(p['A_log'])
    y = reference_selective_scan(u, delta, A, Bm, Cm)
    y = y + p['D'] * u
    return y * _silu(z)


def _branch_params(lp: Dict[str, torch.Tensor], backward: bool) -> Dict[str, torch.Tensor]:
    s = '_b' if backward else ''
    return {
        'conv_w': lp[f'mixer.conv1d{s}.weight'],
        'conv_b': lp[f'mixer.conv1d{s}.bias'],
        'x_proj': lp[f'mixer.x_proj{s}.weight'],
        'dt_w': lp[f'mixer.dt_proj{s}.weight'],
        'dt_b': lp[f'mixer.dt_proj{s}.bias'],
        'A_log': lp['mixer.A_b_log'] if backward else lp['mixer.A_log'],
        'D': lp[f'mixer.D{s}'],
    }


def reference_mixer(h: torch.Tensor, lp: Dict[str, torch.Tensor]) -> torch.Tensor:
    """Bimamba v2 mixer. h: (B, L, C); lp: one layer's params keyed by LAYER_KEYS suffixes."""
    E = lp['mixer.in_proj.weight'].shape[0] // 2
    xz = h @ lp['mixer.in_proj.weight'].t()  # (B, L, 2E)
    x = xz[..., :E]
    z = xz[..., E:]
    y_f = reference_branch(x, z, _branch_params(lp, backward=False))
    y_b = reference_branch(x.flip(1), z.flip(1), _branch_params(lp, backward=True))
    y = (y_f + y_b.flip(1)) / 2
    return y @ lp['mixer.out_proj.weight'].t()


def _depth(state_dict) -> int:
    idx = set()
    for k in state_dict:
        if k.startswith('layers.'):
            idx.add(int(k.split('.')[1]))
    depth = len(idx)
    assert idx == set(range(depth)), f'non-contiguous layer indices {sorted(idx)}'
    return depth


def _layer_params(sd, i) -> Dict[str, torch.Tensor]:
    return {suffix: sd[f'layers.{i}.{suffix}'] for suffix in LAYER_KEYS}


def _infer_stride(H: int, W: int, P: int, M: int) -> int:
    g = int(round(math.sqrt(M)))
    assert g * g == M, f'pos_embed has {M} patch rows: not a square grid; pass stride'
    assert H == W, 'non-square image: pass stride explicitly'
    if g == 1:
        return P
    if (H - P) % (g - 1) == 0:  # exact fit (224: 16 -> 14x14, 8 -> 27x27)
        return (H - P) // (g - 1)
    if (H - P) // P + 1 == g:  # non-overlapping patches, image not an exact multiple
        return P
    raise ValueError(f'cannot infer the stride mapping image {H} with patch {P} to a '
                     f'{g}x{g} grid; pass stride')


def reference_forward_features(state_dict: Dict[str, torch.Tensor],
                               images: torch.Tensor,
                               dtype: torch.dtype = torch.float64,
                               stride: Optional[int] = None) -> dict:
    """Official Vim classification forward; returns intermediate results too.

    Keys: 'tokens_in' (B, M+1, C: after cls insertion + pos_embed), 'cls_index' (M//2),
    'hidden' / 'residual' (lists, per layer, the pair returned by each block),
    'tokens_out' (B, M+1, C: norm_f(residual + hidden)), 'feat' (B, C), 'logits'.
    """
    sd = {k: v.detach().to(dtype) for k, v in state_dict.items()}
    imgs = images.detach().to(dtype)
    depth = _depth(sd)

    # 1. patch embed
    w = sd['patch_embed.proj.weight']
    P = w.shape[-1]
    M_pos = sd['pos_embed'].shape[1] - 1
    if stride is None:
        stride = _infer_stride(imgs.shape[-2], imgs.shape[-1], P, M_pos)
    x = F.conv2d(imgs, w, sd['patch_embed.proj.bias'], stride=stride)  # (B, C, gh, gw)
    x = x.flatten(2).transpose(1, 2)  # (B, M, C), row-major patches
    Bsz, M, C = x.shape
    assert M == M_pos, f'image gives {M} patches, pos_embed has {M_pos}'

    # 2. cls at M//2, THEN pos_embed
    pos = M // 2
    cls = sd['cls_token'].expand(Bsz, -1, -1)
    x = torch.cat([x[:, :pos], cls, x[:, pos:]], dim=1)
    x = x + sd['pos_embed']
    tokens_in = x

    # 3. blocks
    hidden = x
    residual = None
    hiddens: List[torch.Tensor] = []
    residuals: List[torch.Tensor] = []
    for i in range(depth):
        lp = _layer_params(sd, i)
        residual = hidden if residual is None else residual + hidden
        hidden = reference_mixer(reference_rms_norm(residual, lp['norm.weight']), lp)
        hiddens.append(hidden)
        residuals.append(residual)

    # 4. final add + norm, cls at M//2, head
    final_in = hidden if residual is None else residual + hidden
    tokens_out = reference_rms_norm(final_in, sd['norm_f.weight'])
    feat = tokens_out[:, pos]
    logits = feat @ sd['head.weight'].t() + sd['head.bias']
    return {
        'tokens_in': tokens_in,
        'cls_index': pos,
        'hidden': hiddens,
        'residual': residuals,
        'tokens_out': tokens_out,
        'feat': feat,
        'logits': logits,
    }


def reference_forward(state_dict: Dict[str, torch.Tensor],
                      images: torch.Tensor,
                      dtype: torch.dtype = torch.float64,
                      stride: Optional[int] = None) -> torch.Tensor:
    """Logits (B, num_classes) of the official Vim classifier, computed in ``dtype``.

    C, E, N, R, K and depth are derived from the state_dict shapes; ``stride`` defaults to the
    one that maps the (square) image onto the pos_embed grid (16 for 224/196 tokens, 8 for
    224/729 tokens).
    """
    return reference_forward_features(state_dict, images, dtype=dtype, stride=stride)['logits']


__all__ = [
    'LAYER_KEYS', 'official_state_dict_shapes', 'official_state_dict', 'official_model_name',
    'perturbed_copy', 'save_official_checkpoint', 'load_official_checkpoint',
    'reference_rms_norm', 'reference_causal_conv1d', 'reference_selective_scan',
    'reference_branch', 'reference_mixer', 'reference_forward_features', 'reference_forward',
    'reference_parameter_count'
]
