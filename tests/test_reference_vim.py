"""Sanity tests of the independent Vim reference (tests/reference_vim.py) itself."""

import argparse
import subprocess
import sys
import math

import pytest
import torch
import torch.nn.functional as F

from reference_vim import (LAYER_KEYS, load_official_checkpoint, official_model_name,
                           official_state_dict, official_state_dict_shapes,
                           reference_branch, reference_causal_conv1d, reference_forward,
                           reference_forward_features, reference_mixer,
                           reference_parameter_count, reference_rms_norm,
                           reference_selective_scan, save_official_checkpoint)

D64 = torch.float64


def _small_sd(**kw):
    cfg = dict(depth=2, img_size=32, patch_size=16, stride=16, seed=0)
    cfg.update(kw)
    return official_state_dict(**cfg)


def _images(b=2, size=32, seed=1):
    return torch.randn(b, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _layer(sd, i=0):
    return {s: sd[f'layers.{i}.{s}'].to(D64) for s in LAYER_KEYS}


# ---------------------------------------------------------------------------
# (a) keys, order, shapes, parameter counts
# ---------------------------------------------------------------------------
def test_tiny_keys_order_shapes():
    sd = official_state_dict()
    keys = list(sd)
    assert len(keys) == 415 == 6 + 24 * 17 + 1
    assert keys[:6] == ['cls_token', 'pos_embed', 'patch_embed.proj.weight',
                        'patch_embed.proj.bias', 'head.weight', 'head.bias']
    assert keys[-1] == 'norm_f.weight'
    for i in range(24):
        assert keys[6 + 17 * i:6 + 17 * (i + 1)] == [f'layers.{i}.{s}' for s in LAYER_KEYS]
    assert keys[6:6 + 17] == [
        'layers.0.mixer.A_log', 'layers.0.mixer.D', 'layers.0.mixer.A_b_log',
        'layers.0.mixer.D_b', 'layers.0.mixer.in_proj.weight', 'layers.0.mixer.conv1d.weight',
        'layers.0.mixer.conv1d.bias', 'layers.0.mixer.x_proj.weight',
        'layers.0.mixer.dt_proj.weight', 'layers.0.mixer.dt_proj.bias',
        'layers.0.mixer.conv1d_b.weight', 'layers.0.mixer.conv1d_b.bias',
        'layers.0.mixer.x_proj_b.weight', 'layers.0.mixer.dt_proj_b.weight',
        'layers.0.mixer.dt_proj_b.bias', 'layers.0.mixer.out_proj.weight',
        'layers.0.norm.weight'
    ]
    C, E, R, N, K = 192, 384, 12, 16, 4
    expect = {
        'cls_token': (1, 1, C),
        'pos_embed': (1, 197, C),
        'patch_embed.proj.weight': (C, 3, 16, 16),
        'patch_embed.proj.bias': (C, ),
        'head.weight': (1000, C),
        'head.bias': (1000, ),
        'norm_f.weight': (C, ),
        'layers.23.norm.weight': (C, ),
        'layers.23.mixer.in_proj.weight': (2 * E, C),
        'layers.23.mixer.out_proj.weight': (C, E),
    }
    for b in ('', '_b'):
        expect.update({
            f'layers.5.mixer.conv1d{b}.weight': (E, 1, K),
            f'layers.5.mixer.conv1d{b}.bias': (E, ),
            f'layers.5.mixer.x_proj{b}.weight': (R + 2 * N, E),
            f'layers.5.mixer.dt_proj{b}.weight': (E, R),
            f'layers.5.mixer.dt_proj{b}.bias': (E, ),
            f'layers.5.mixer.D{b}': (E, ),
        })
    expect['layers.5.mixer.A_log'] = (E, N)
    expect['layers.5.mixer.A_b_log'] = (E, N)
    for k, s in expect.items():
        assert tuple(sd[k].shape) == s, k
    assert all(v.dtype == torch.float32 and v.is_contiguous() for v in sd.values())
    shapes = official_state_dict_shapes()
    assert list(shapes) == keys
    assert all(shapes[k] == sd[k].shape for k in keys)
    assert reference_parameter_count(sd) == 7_148_008


@pytest.mark.parametrize('embed_dim,count', [(192, 7_148_008), (384, 25_796_584),
                                             (768, 97_598_440)])
def test_parameter_counts(embed_dim, count):
    sd = official_state_dict(embed_dim=embed_dim, meta=True)
    assert len(sd) == 415
    assert reference_parameter_count(sd) == count
    R = math.ceil(embed_dim / 16)
    assert sd['layers.0.mixer.dt_proj.weight'].shape == (2 * embed_dim, R)


def test_stride8_variant_shapes():
    shapes = official_state_dict_shapes(stride=8)
    assert shapes['pos_embed'] == (1, 27 * 27 + 1, 192)
    assert shapes['patch_embed.proj.weight'] == (192, 3, 16, 16)


def test_values_realistic_and_deterministic():
    a = _small_sd()
    b = _small_sd()
    c = _small_sd(seed=1)
    assert list(a) == list(b)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a['layers.0.mixer.in_proj.weight'], c['layers.0.mixer.in_proj.weight'])
    N = 16
    base = torch.log(torch.arange(1, N + 1, dtype=torch.float32))
    for i in range(2):
        p = f'layers.{i}.mixer.'
        for name in ('A_log', 'A_b_log'):
            assert (a[p + name] - base).abs().max() < 0.7
        dt = F.softplus(a[p + 'dt_proj.bias'].double())
        assert dt.min() >= 1e-3 * (1 - 1e-5) and dt.max() <= 1e-1 * (1 + 1e-5)
        dt_b = F.softplus(a[p + 'dt_proj_b.bias'].double())
        assert dt_b.min() >= 1e-3 * (1 - 1e-5) and dt_b.max() <= 1e-1 * (1 + 1e-5)
        # forward and backward parameters differ, so a mix-up is detectable
        for f_name, b_name in [('A_log', 'A_b_log'), ('D', 'D_b'),
                               ('conv1d.weight', 'conv1d_b.weight'),
                               ('conv1d.bias', 'conv1d_b.bias'),
                               ('x_proj.weight', 'x_proj_b.weight'),
                               ('dt_proj.weight', 'dt_proj_b.weight'),
                               ('dt_proj.bias', 'dt_proj_b.bias')]:
            assert not torch.allclose(a[p + f_name], a[p + b_name])
    assert abs(a['pos_embed'].std().item() - 0.02) < 0.01
    assert (a['norm_f.weight'] - 1).abs().mean() < 0.3


# ---------------------------------------------------------------------------
# (b) building blocks against hand-written formulas
# ---------------------------------------------------------------------------
def test_rms_norm_by_hand():
    x = torch.tensor([[3.0, 4.0], [1.0, -1.0]], dtype=D64)
    w = torch.tensor([2.0, 0.5], dtype=D64)
    y = reference_rms_norm(x, w)
    exp0 = torch.tensor([3.0 * 2.0, 4.0 * 0.5], dtype=D64) / math.sqrt(12.5 + 1e-5)
    exp1 = torch.tensor([1.0 * 2.0, -1.0 * 0.5], dtype=D64) / math.sqrt(1.0 + 1e-5)
    assert torch.allclose(y[0], exp0, rtol=1e-14, atol=0)
    assert torch.allclose(y[1], exp1, rtol=1e-14, atol=0)


def test_causal_conv1d_matches_padded_conv_and_hand_values():
    g = torch.Generator().manual_seed(0)
    B, L, E, K = 2, 7, 5, 4
    x = torch.randn(B, L, E, generator=g, dtype=D64)
    w = torch.randn(E, 1, K, generator=g, dtype=D64)
    b = torch.randn(E, generator=g, dtype=D64)
    y = reference_causal_conv1d(x, w, b)
    ref = F.conv1d(x.transpose(1, 2), w, b, padding=K - 1, groups=E)[..., :L].transpose(1, 2)
    assert torch.allclose(y, ref, rtol=1e-13, atol=1e-13)
    # hand values: t=0 only sees the last tap, t=1 the last two
    assert torch.allclose(y[:, 0], b + w[:, 0, 3] * x[:, 0], rtol=1e-14)
    assert torch.allclose(y[:, 1], b + w[:, 0, 3] * x[:, 1] + w[:, 0, 2] * x[:, 0], rtol=1e-14)
    # sequences shorter than the kernel
    y2 = reference_causal_conv1d(x[:, :2], w, b)
    assert torch.allclose(y2, y[:, :2], rtol=1e-14)


def test_selective_scan_equals_closed_form_L3():
    g = torch.Generator().manual_seed(0)
    B, L, E, N = 2, 3, 4, 3
    u = torch.randn(B, L, E, generator=g, dtype=D64)
    delta = F.softplus(torch.randn(B, L, E, generator=g, dtype=D64))
    A = -torch.exp(torch.randn(E, N, generator=g, dtype=D64))
    Bm = torch.randn(B, L, N, generator=g, dtype=D64)
    Cm = torch.randn(B, L, N, generator=g, dtype=D64)
    y = reference_selective_scan(u, delta, A, Bm, Cm)
    assert y.shape == (B, L, E)
    for b in range(B):
        for e in range(E):
            d1, d2, d3 = (delta[b, t, e].item() for t in range(3))
            u1, u2, u3 = (u[b, t, e].item() for t in range(3))
            y1 = y2 = y3 = 0.0
            for n in range(N):
                a = A[e, n].item()
                b1, b2, b3 = (Bm[b, t, n].item() for t in range(3))
                c1, c2, c3 = (Cm[b, t, n].item() for t in range(3))
                # h1 = d1 b1 u1 ; h2 = e^{d2 a} h1 + d2 b2 u2 ; h3 = e^{d3 a} h2 + d3 b3 u3
                y1 += c1 * (d1 * b1 * u1)
                y2 += c2 * (math.exp(d2 * a) * d1 * b1 * u1 + d2 * b2 * u2)
                y3 += c3 * (math.exp((d2 + d3) * a) * d1 * b1 * u1 +
                            math.exp(d3 * a) * d2 * b2 * u2 + d3 * b3 * u3)
            got = y[b, :, e].tolist()
            for g_, w_ in zip(got, (y1, y2, y3)):
                assert abs(g_ - w_) <= 1e-12 * max(1.0, abs(w_))


def test_branch_by_hand_single_token():
    """L=1: conv sees only the last tap, h = delta*B*u, y = (<h,C> + D u) * silu(z)."""
    g = torch.Generator().manual_seed(3)
    E, N, R, K = 6, 4, 2, 4
    p = {
        'conv_w': torch.randn(E, 1, K, generator=g, dtype=D64),
        'conv_b': torch.randn(E, generator=g, dtype=D64),
        'x_proj': torch.randn(R + 2 * N, E, generator=g, dtype=D64) * 0.3,
        'dt_w': torch.randn(E, R, generator=g, dtype=D64) * 0.3,
        'dt_b': torch.randn(E, generator=g, dtype=D64),
        'A_log': torch.randn(E, N, generator=g, dtype=D64),
        'D': torch.randn(E, generator=g, dtype=D64),
    }
    x = torch.randn(1, 1, E, generator=g, dtype=D64)
    z = torch.randn(1, 1, E, generator=g, dtype=D64)
    y = reference_branch(x, z, p)[0, 0]
    pre = p['conv_b'] + p['conv_w'][:, 0, K - 1] * x[0, 0]
    u = pre / (1 + torch.exp(-pre))
    xd = p['x_proj'] @ u
    dt_low, Bv, Cv = xd[:R], xd[R:R + N], xd[R + N:]
    delta = torch.log1p(torch.exp(p['dt_w'] @ dt_low + p['dt_b']))  # bias added exactly once
    h = delta[:, None] * Bv[None, :] * u[:, None]
    yy = (h * Cv[None, :]).sum(-1) + p['D'] * u
    yy = yy * (z[0, 0] / (1 + torch.exp(-z[0, 0])))
    assert torch.allclose(y, yy, rtol=1e-12, atol=1e-14)


# ---------------------------------------------------------------------------
# (c) flip facts of the bimamba v2 mixer / whole network
# ---------------------------------------------------------------------------
def _tie_backward(lp):
    lp = dict(lp)
    for f_name, b_name in [('A_log', 'A_b_log'), ('D', 'D_b'),
                           ('conv1d.weight', 'conv1d_b.weight'),
                           ('conv1d.bias', 'conv1d_b.bias'),
                           ('x_proj.weight', 'x_proj_b.weight'),
                           ('dt_proj.weight', 'dt_proj_b.weight'),
                           ('dt_proj.bias', 'dt_proj_b.bias')]:
        lp['mixer.' + b_name] = lp['mixer.' + f_name].clone()
    return lp


def test_mixer_flip_equivariant_iff_tied_backward_params():
    sd = _small_sd()
    h = torch.randn(2, 9, 192, generator=torch.Generator().manual_seed(0), dtype=D64)
    lp = _layer(sd)
    tied = _tie_backward(lp)
    out = reference_mixer(h, tied)
    out_f = reference_mixer(h.flip(1), tied)
    assert torch.allclose(out_f, out.flip(1), rtol=1e-10, atol=1e-12)
    # with the real (distinct) backward params the mixer is not flip-equivariant
    out = reference_mixer(h, lp)
    out_f = reference_mixer(h.flip(1), lp)
    assert (out_f - out.flip(1)).abs().max() > 1e-3 * out.abs().max()


def test_mixer_is_not_the_forward_only_slow_path():
    sd = _small_sd()
    lp = _layer(sd)
    h = torch.randn(1, 5, 192, generator=torch.Generator().manual_seed(0), dtype=D64)
    E = 384
    xz = h @ lp['mixer.in_proj.weight'].t()
    x, z = xz[..., :E], xz[..., E:]
    fwd_p = {
        'conv_w': lp['mixer.conv1d.weight'], 'conv_b': lp['mixer.conv1d.bias'],
        'x_proj': lp['mixer.x_proj.weight'], 'dt_w': lp['mixer.dt_proj.weight'],
        'dt_b': lp['mixer.dt_proj.bias'], 'A_log': lp['mixer.A_log'], 'D': lp['mixer.D']
    }
    bwd_p = {
        'conv_w': lp['mixer.conv1d_b.weight'], 'conv_b': lp['mixer.conv1d_b.bias'],
        'x_proj': lp['mixer.x_proj_b.weight'], 'dt_w': lp['mixer.dt_proj_b.weight'],
        'dt_b': lp['mixer.dt_proj_b.bias'], 'A_log': lp['mixer.A_b_log'], 'D': lp['mixer.D_b']
    }
    y_f = reference_branch(x, z, fwd_p)
    y_b = reference_branch(x.flip(1), z.flip(1), bwd_p).flip(1)
    out = reference_mixer(h, lp)
    W = lp['mixer.out_proj.weight']
    assert torch.allclose(out, ((y_f + y_b) / 2) @ W.t(), rtol=1e-12, atol=1e-14)
    slow = y_f @ W.t()
    assert (out - slow).abs().max() > 1e-2 * out.abs().max()
    no_div = (y_f + y_b) @ W.t()
    assert torch.allclose(no_div, 2 * out, rtol=1e-12, atol=1e-14)


def test_network_rot180_invariance_with_symmetric_params():
    """M even => reversing [p0..p_{m-1}, cls, p_m..] keeps cls at m = M//2. With tied
    backward params, a palindromic pos_embed and a 180-degree-symmetric patch kernel,
    rotating the image by 180 degrees reverses the token sequence, so logits are equal."""
    sd = _small_sd()  # 32x32, patch 16 -> 2x2 = 4 tokens, cls at 2
    sym = dict(sd)
    for i in range(2):
        lp = _tie_backward({s: sd[f'layers.{i}.{s}'] for s in LAYER_KEYS})
        for s, v in lp.items():
            sym[f'layers.{i}.{s}'] = v
    sym['pos_embed'] = (sd['pos_embed'] + sd['pos_embed'].flip(1)) / 2
    w = sd['patch_embed.proj.weight']
    sym['patch_embed.proj.weight'] = (w + w.flip(-1, -2)) / 2
    img = _images()
    rot = img.flip(-1, -2)
    a = reference_forward(sym, img)
    b = reference_forward(sym, rot)
    assert torch.allclose(a, b, rtol=1e-10, atol=1e-12)
    # the real (untied) parameters break the symmetry
    assert not torch.allclose(reference_forward(sd, img), reference_forward(sd, rot),
                              rtol=1e-4, atol=1e-6)


# ---------------------------------------------------------------------------
# cls token placement / pos_embed order
# ---------------------------------------------------------------------------
def test_cls_inserted_at_middle_before_pos_embed():
    sd = _small_sd()
    img = _images()
    out = reference_forward_features(sd, img)
    M, P, s, g = 4, 16, 16, 2
    assert out['cls_index'] == M // 2
    tok = out['tokens_in']
    assert tok.shape == (2, M + 1, 192)
    w = sd['patch_embed.proj.weight'].double()
    bias = sd['patch_embed.proj.bias'].double()
    pos = sd['pos_embed'].double()[0]
    for j in range(M):  # patch j = row-major (r, c), embedded by hand
        r, c = divmod(j, g)
        patch = img.double()[:, :, r * s:r * s + P, c * s:c * s + P]
        emb = (patch[:, None] * w[None]).sum(dim=(2, 3, 4)) + bias
        row = j if j < M // 2 else j + 1
        assert torch.allclose(tok[:, row], emb + pos[row], rtol=1e-12, atol=1e-13)
    cls = sd['cls_token'].double()[0, 0] + pos[M // 2]
    assert torch.allclose(tok[:, M // 2], cls.expand(2, -1), rtol=0, atol=0)
    # shifting pos_embed row M//2 == shifting the cls token
    d = 0.3 * torch.randn(192, generator=torch.Generator().manual_seed(5), dtype=D64)
    sd = {k: v.double() for k, v in sd.items()}  # exact shifts (no fp32 rounding)
    sd_pos = dict(sd)
    sd_pos['pos_embed'] = sd['pos_embed'].clone()
    sd_pos['pos_embed'][0, M // 2] += d
    sd_cls = dict(sd)
    sd_cls['cls_token'] = sd['cls_token'] + d
    lp, lc = reference_forward(sd_pos, img), reference_forward(sd_cls, img)
    assert torch.allclose(lp, lc, rtol=1e-10, atol=1e-12)
    sd_row0 = dict(sd)
    sd_row0['pos_embed'] = sd['pos_embed'].clone()
    sd_row0['pos_embed'][0, 0] += d
    assert not torch.allclose(reference_forward(sd_row0, img), lc, rtol=1e-4, atol=1e-6)


def test_tiny_224_single_layer_shapes():
    sd = official_state_dict(depth=1)
    out = reference_forward_features(sd, _images(b=1, size=224))
    assert out['cls_index'] == 98
    assert out['tokens_out'].shape == (1, 197, 192)
    assert out['logits'].shape == (1, 1000)
    assert torch.isfinite(out['logits']).all()


# ---------------------------------------------------------------------------
# (d) whole forward: small config
# ---------------------------------------------------------------------------
def test_forward_small_deterministic_batch_independent():
    sd = _small_sd()
    img = _images()
    a = reference_forward(sd, img)
    b = reference_forward(official_state_dict(depth=2, img_size=32, seed=0), img.clone())
    assert a.shape == (2, 1000) and a.dtype == D64
    assert torch.isfinite(a).all()
    assert torch.equal(a, b)
    single = reference_forward(sd, img[1:])
    assert torch.allclose(single[0], a[1], rtol=1e-12, atol=1e-12)
    assert a.std() > 0.1  # not degenerate
    assert (a[0] - a[1]).abs().max() > 1e-2  # depends on the input
    # float32 run of the same reference agrees to well within 1e-5
    a32 = reference_forward(sd, img, dtype=torch.float32)
    assert a32.dtype == torch.float32
    assert ((a32.double() - a).norm() / a.norm()) < 1e-5
    # explicit stride == inferred stride
    assert torch.equal(reference_forward(sd, img, stride=16), a)


def test_forward_overlapping_stride_inference():
    sd = official_state_dict(depth=1, img_size=32, patch_size=16, stride=8)  # 3x3 grid
    assert sd['pos_embed'].shape == (1, 10, 192)
    img = _images(b=1)
    out = reference_forward_features(sd, img)
    assert out['cls_index'] == 4
    assert torch.equal(out['logits'], reference_forward(sd, img, stride=8))


def test_every_block_contributes():
    sd = _small_sd()
    out = reference_forward_features(sd, _images())
    for h, r in zip(out['hidden'], out['residual']):
        ratio = h.norm(dim=-1).mean() / r.norm(dim=-1).mean()
        assert 0.05 < ratio < 2.0


# ---------------------------------------------------------------------------
# checkpoint file layout
# ---------------------------------------------------------------------------
def test_official_checkpoint_layout(tmp_path):
    sd = _small_sd()
    path = tmp_path / 'vim_t_midclstok_76p1acc.pth'
    save_official_checkpoint(path, sd)
    # A fresh interpreter (mtr_mm, once imported, allow-lists argparse.Namespace process-wide):
    # plain torch.load refuses the official layout.
    probe = subprocess.run([sys.executable, '-c', f'import torch; torch.load({str(path)!r}, weights_only=True)'],
                           capture_output=True, text=True)
    assert probe.returncode != 0 and 'Namespace' in probe.stderr
    ck = load_official_checkpoint(path)
    assert list(ck) == ['model', 'optimizer', 'lr_scheduler', 'epoch', 'model_ema', 'scaler',
                        'args']
    assert list(ck['model']) == list(sd)
    assert all(torch.equal(ck['model'][k], sd[k]) for k in sd)
    assert list(ck['model_ema']) == list(sd)
    assert all(ck['model_ema'][k].shape == sd[k].shape for k in sd)
    assert not torch.equal(ck['model_ema']['head.weight'], sd['head.weight'])
    img = _images()
    assert not torch.allclose(reference_forward(ck['model_ema'], img),
                              reference_forward(sd, img), rtol=1e-4, atol=1e-6)
    assert isinstance(ck['args'], argparse.Namespace)
    assert ck['args'].model == official_model_name(192, 16) == \
        'vim_tiny_patch16_224_bimambav2_final_pool_mean_abs_pos_embed_with_midclstok_div2'
    assert isinstance(ck['epoch'], int)
    # bare variant
    path2 = tmp_path / 'bare.pth'
    save_official_checkpoint(path2, sd, with_args=False, with_ema=False)
    ck2 = torch.load(path2, map_location='cpu', weights_only=True)
    assert 'args' not in ck2 and 'model_ema' not in ck2 and list(ck2['model']) == list(sd)


def test_block_residual_wiring_depth2_by_hand():
    """r1 = x; h1 = mix1(norm1(r1)); r2 = r1 + h1; h2 = mix2(norm2(r2));
    feat = norm_f(r2 + h2)[:, M//2]; logits = head(feat)."""
    sd = _small_sd()
    img = _images()
    out = reference_forward_features(sd, img)
    x = out['tokens_in']
    l0, l1 = _layer(sd, 0), _layer(sd, 1)
    h1 = reference_mixer(reference_rms_norm(x, l0['norm.weight']), l0)
    r2 = x + h1
    h2 = reference_mixer(reference_rms_norm(r2, l1['norm.weight']), l1)
    final = reference_rms_norm(r2 + h2, sd['norm_f.weight'].double())
    feat = final[:, 2]
    logits = feat @ sd['head.weight'].double().t() + sd['head.bias'].double()
    assert torch.allclose(out['logits'], logits, rtol=1e-12, atol=1e-12)
    assert torch.allclose(out['residual'][1], r2, rtol=1e-12, atol=1e-12)
    # the plain chained (non pre-norm-residual) wiring is a different network
    chained = reference_mixer(reference_rms_norm(h1, l1['norm.weight']), l1)
    wrong = reference_rms_norm(h1 + chained, sd['norm_f.weight'].double())[:, 2]
    assert (wrong - feat).abs().max() > 1e-2
