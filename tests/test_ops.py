"""Tests for mtr_mm.ops: numerics against independent float64 references, and backend dispatch.

The references below are written from the formulas on purpose (plain per-step / per-position
loops in float64) and share no code with the implementations under test.
"""
import sys
import types

import pytest
import torch

from mtr_mm.ops import (causal_conv1d, cuda_kernels_available, get_ops_backend, rms_norm,
                        selective_scan, set_ops_backend, set_scan_kernel)
from mtr_mm.ops import backend as ops_backend
from mtr_mm.ops.selective_scan import selective_scan_torch


def reference_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=True):
    """h_t = exp(Δ_t A) ⊙ h_{t-1} + Δ_t B_t u_t;  y_t = <h_t, C_t> + D u_t;  y *= silu(z)."""
    u, delta, A, B, C = (t.double() for t in (u, delta, A, B, C))
    if delta_bias is not None:
        delta = delta + delta_bias.double()[:, None]
    if delta_softplus:
        delta = torch.log1p(torch.exp(delta))
    batch, dim, length = u.shape
    h = torch.zeros(batch, dim, A.shape[1], dtype=torch.float64)
    ys = []
    for t in range(length):
        dt = delta[:, :, t, None]
        h = torch.exp(dt * A) * h + dt * B[:, None, :, t] * u[:, :, t, None]
        y = (h * C[:, None, :, t]).sum(-1)
        if D is not None:
            y = y + D.double() * u[:, :, t]
        ys.append(y)
    y = torch.stack(ys, -1)
    if z is not None:
        z = z.double()
        y = y * z * torch.sigmoid(z)
    return y


def make_scan_inputs(batch, dim, state, length, dtype=torch.float32, seed=0, decay=1.0):
    g = torch.Generator().manual_seed(seed)
    rand = lambda *shape: torch.randn(*shape, generator=g)  # noqa: E731
    return dict(
        u=rand(batch, dim, length).to(dtype),
        delta=(rand(batch, dim, length) * 0.5 - 1.0).to(dtype),
        A=-torch.exp(rand(dim, state) * 0.5) * decay,  # fp32 weights, as in Vim
        B=rand(batch, state, length).to(dtype),
        C=rand(batch, state, length).to(dtype),
        D=rand(dim),
        z=rand(batch, dim, length).to(dtype),
        delta_bias=rand(dim) * 0.1,
    )


def rel_err(y, ref):
    return ((y.double() - ref).abs().max() / ref.abs().max()).item()


@pytest.fixture(autouse=True)
def clean_backend_state():
    """Each test starts with the default backend and no cached kernel lookups; CUDA scans go to
    mamba-ssm's kernels (the fakes here; test_triton_scan.py covers the Triton ones)."""
    set_ops_backend('auto')
    set_scan_kernel('mamba')
    ops_backend.clear_kernel_cache()
    yield
    set_ops_backend('auto')
    set_scan_kernel('auto')
    ops_backend.clear_kernel_cache()


# ---------------------------------------------------------------- selective_scan numerics

@pytest.mark.parametrize('batch,dim,state,length', [
    (2, 8, 4, 1),
    (2, 8, 4, 37),      # not a multiple of any chunk size used below
    (1, 16, 16, 64),    # a multiple of all of them
    (2, 24, 16, 197),   # Vim's 196 patches + cls token
])
@pytest.mark.parametrize('layout', [
    dict(),                                 # defaults
    dict(chunk_size=5),
    dict(chunk_size=16),
    dict(chunk_size=4, step_numel=1),       # one chunk per block
    dict(chunk_size=3, step_numel=2500),    # a few chunks per block, several blocks
], ids=['default', 'T5', 'T16', 'T4-1chunk-blocks', 'T3-multichunk-blocks'])
def test_scan_matches_reference(batch, dim, state, length, layout):
    x = make_scan_inputs(batch, dim, state, length)
    y = selective_scan_torch(**x, **layout)
    assert y.shape == (batch, dim, length) and y.dtype == torch.float32
    assert rel_err(y, reference_scan(**x)) <= 1e-5


def test_scan_accepts_strided_inputs():
    # In Vim, B and C are slices of x_proj's output: (batch, N, L) views with L not innermost.
    x = make_scan_inputs(2, 8, 4, 30)
    for name in ('u', 'B', 'C', 'delta'):
        x[name] = x[name].transpose(1, 2).contiguous().transpose(1, 2)
    assert not x['B'].is_contiguous()
    assert rel_err(selective_scan(**x), reference_scan(**x)) <= 1e-5


@pytest.mark.parametrize('drop', ['D', 'z', 'delta_bias'])
def test_scan_optional_inputs(drop):
    x = make_scan_inputs(2, 8, 4, 29)
    x[drop] = None
    assert rel_err(selective_scan(**x), reference_scan(**x)) <= 1e-5


def test_scan_returns_y_before_the_gate_when_asked():
    x = make_scan_inputs(2, 8, 4, 29)
    gated, ungated = selective_scan(**x, return_ungated=True)
    assert rel_err(gated, reference_scan(**x)) <= 1e-5
    assert rel_err(ungated, reference_scan(**{**x, 'z': None})) <= 1e-5
    assert torch.equal(gated, selective_scan(**x))


def test_scan_without_softplus():
    x = make_scan_inputs(2, 8, 4, 29)
    x['delta'] = x['delta'].abs()  # without softplus Δ must already be positive
    y = selective_scan(**x, delta_softplus=False)
    assert rel_err(y, reference_scan(**x, delta_softplus=False)) <= 1e-5


def test_scan_strong_decay_is_stable():
    # Δ·A around -150 per step: a chunk's total decay is far below exp's range.
    x = make_scan_inputs(2, 8, 4, 70, decay=50.0)
    x['delta'] = x['delta'] + 4.0
    y = selective_scan_torch(**x, chunk_size=32)
    assert torch.isfinite(y).all()
    assert rel_err(y, reference_scan(**x)) <= 1e-5


def test_scan_low_precision_returns_input_dtype():
    x = make_scan_inputs(2, 8, 4, 33, dtype=torch.bfloat16)
    y = selective_scan(**x)
    assert y.dtype == torch.bfloat16
    # The bf16 inputs are exact in float64, so only the bf16 output rounding remains.
    assert rel_err(y, reference_scan(**x)) <= 1e-2


@pytest.mark.parametrize('layout', [dict(chunk_size=8), dict(chunk_size=3, step_numel=100)],
                         ids=['one-block', 'several-blocks'])
def test_scan_gradients_match_reference(layout):
    x = make_scan_inputs(2, 6, 4, 23, dtype=torch.float64)
    x = {k: v.double().requires_grad_() for k, v in x.items()}  # A, D, delta_bias come as fp32
    weight = torch.randn(2, 6, 23, dtype=torch.float64)
    grads = torch.autograd.grad((selective_scan_torch(**x, **layout) * weight).sum(),
                                list(x.values()))
    ref_grads = torch.autograd.grad((reference_scan(**x) * weight).sum(), list(x.values()))
    for name, g, ref in zip(x, grads, ref_grads):
        assert rel_err(g, ref) <= 1e-10, name


# ---------------------------------------------------------------- causal_conv1d

def reference_causal_conv(x, weight, bias, activation):
    x, weight = x.double(), weight.double().reshape(weight.shape[0], -1)
    batch, dim, length = x.shape
    width = weight.shape[1]
    y = torch.zeros(batch, dim, length, dtype=torch.float64)
    for t in range(length):
        for k in range(width):
            src = t - (width - 1) + k  # tap k of output t reads input t-K+1+k
            if src >= 0:
                y[:, :, t] += weight[:, k] * x[:, :, src]
    if bias is not None:
        y += bias.double()[:, None]
    return y * torch.sigmoid(y) if activation == 'silu' else y


@pytest.mark.parametrize('weight_shape', ['EK', 'E1K'])
@pytest.mark.parametrize('activation', [None, 'silu'])
@pytest.mark.parametrize('with_bias', [True, False])
@pytest.mark.parametrize('length', [1, 3, 20])
def test_causal_conv1d_matches_reference(weight_shape, activation, with_bias, length):
    x = torch.randn(2, 6, length)
    weight = torch.randn(6, 4) if weight_shape == 'EK' else torch.randn(6, 1, 4)
    bias = torch.randn(6) if with_bias else None
    y = causal_conv1d(x, weight, bias, activation)
    assert y.shape == x.shape
    assert rel_err(y, reference_causal_conv(x, weight, bias, activation)) <= 1e-6


def test_causal_conv1d_rejects_unknown_activation():
    with pytest.raises(ValueError, match='activation'):
        causal_conv1d(torch.randn(1, 2, 3), torch.randn(2, 4), activation='relu')


# ---------------------------------------------------------------- rms_norm

def test_rms_norm_matches_reference():
    x, w = torch.randn(3, 5, 32), torch.randn(32)
    ref = x.double() * torch.rsqrt(x.double().pow(2).mean(-1, keepdim=True) + 1e-5) * w.double()
    assert rel_err(rms_norm(x, w), ref) <= 1e-6


def test_rms_norm_keeps_low_precision_dtype():
    x, w = torch.randn(4, 64).bfloat16(), torch.randn(64)
    y = rms_norm(x, w, eps=1e-6)
    ref = x.double() * torch.rsqrt(x.double().pow(2).mean(-1, keepdim=True) + 1e-6) * w.double()
    assert y.dtype == torch.bfloat16
    assert rel_err(y, ref) <= 1e-2


# ---------------------------------------------------------------- backend dispatch

def call_scan(backend):
    return selective_scan(**make_scan_inputs(1, 4, 2, 5), backend=backend)


def call_conv(backend):
    return causal_conv1d(torch.randn(1, 4, 5), torch.randn(4, 3), backend=backend)


def call_norm(backend):
    return rms_norm(torch.randn(2, 4), torch.ones(4), backend=backend)


ALL_OPS = [call_scan, call_conv, call_norm]


def test_backend_setting_roundtrip():
    assert get_ops_backend() == 'auto'
    set_ops_backend('torch')
    assert get_ops_backend() == 'torch'
    with pytest.raises(ValueError, match='unknown ops backend'):
        set_ops_backend('triton')
    with pytest.raises(ValueError, match='unknown ops backend'):
        rms_norm(torch.randn(2, 4), torch.ones(4), backend='gpu')


def hide_module(monkeypatch, name):
    """Make ``import name`` fail, whether or not the package is installed here."""
    monkeypatch.setitem(sys.modules, name, None)


@pytest.mark.parametrize('op', ALL_OPS)
@pytest.mark.parametrize('per_call', [True, False])
def test_cuda_request_without_kernels_raises(monkeypatch, op, per_call):
    hide_module(monkeypatch, 'mamba_ssm')
    assert not cuda_kernels_available()
    if not per_call:
        set_ops_backend('cuda')
    with pytest.raises(RuntimeError, match=r"pip install -e \.\[cuda\].*backend 'torch'"):
        op('cuda' if per_call else None)


def install_fake_kernels(monkeypatch, with_conv=True):
    """Make the CUDA path reachable on CPU: CUDA 'available' and fake kernel modules that record
    their calls and return a marker tensor of 7s. Returns the list of recorded calls."""
    calls = []

    def fake_kernel(name):
        def kernel(*args, **kwargs):
            calls.append((name, args, kwargs))
            return torch.full_like(args[0], 7.0)
        return kernel

    interface = types.ModuleType('mamba_ssm.ops.selective_scan_interface')
    interface.selective_scan_fn = fake_kernel('scan')
    modules = {'mamba_ssm': types.ModuleType('mamba_ssm'),
               'mamba_ssm.ops': types.ModuleType('mamba_ssm.ops'),
               'mamba_ssm.ops.selective_scan_interface': interface}
    if with_conv:
        modules['causal_conv1d'] = types.ModuleType('causal_conv1d')
        modules['causal_conv1d'].causal_conv1d_fn = fake_kernel('conv')
    else:
        hide_module(monkeypatch, 'causal_conv1d')
    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    return calls


def test_auto_and_torch_on_cpu_tensors_never_call_kernels(monkeypatch):
    calls = install_fake_kernels(monkeypatch)
    assert cuda_kernels_available()
    for op in ALL_OPS:
        for backend in ('auto', None, 'torch'):
            assert not (op(backend) == 7).all()
    assert calls == []


def test_cuda_scan_forwards_documented_arguments(monkeypatch):
    calls = install_fake_kernels(monkeypatch)
    assert cuda_kernels_available()
    x = make_scan_inputs(2, 4, 3, 6)
    y = selective_scan(**x, delta_softplus=False, backend='cuda')
    assert (y == 7).all()
    [(name, args, kwargs)] = calls
    assert name == 'scan'
    assert len(args) == 5 and all(a is x[k] for a, k in zip(args, ['u', 'delta', 'A', 'B', 'C']))
    assert kwargs.keys() == {'D', 'z', 'delta_bias', 'delta_softplus'}
    assert kwargs['D'] is x['D'] and kwargs['z'] is x['z'] and kwargs['delta_bias'] is x['delta_bias']
    assert kwargs['delta_softplus'] is False  # mamba-ssm's default is False: always pass it


def test_cuda_scan_via_process_default(monkeypatch):
    calls = install_fake_kernels(monkeypatch)
    set_ops_backend('cuda')
    selective_scan(**make_scan_inputs(1, 4, 2, 5))
    [(name, _, kwargs)] = calls
    assert name == 'scan' and kwargs['delta_softplus'] is True


def test_cuda_conv_forwards_weight_as_e_by_k(monkeypatch):
    calls = install_fake_kernels(monkeypatch)
    x, weight, bias = torch.randn(1, 4, 5), torch.randn(4, 1, 3), torch.randn(4)
    y = causal_conv1d(x, weight, bias, activation='silu', backend='cuda')
    assert (y == 7).all()
    [(name, args, kwargs)] = calls
    assert name == 'conv' and args[0] is x and args[2] is bias
    assert args[1].shape == (4, 3) and torch.equal(args[1], weight[:, 0])
    assert kwargs == {'activation': 'silu'}  # keyword: the 4th positional of causal_conv1d_fn is seq_idx


def test_cuda_conv_without_causal_conv1d_package_falls_back_to_torch(monkeypatch):
    calls = install_fake_kernels(monkeypatch, with_conv=False)
    x, weight = torch.randn(1, 4, 5), torch.randn(4, 3)
    y = causal_conv1d(x, weight, backend='cuda')
    assert calls == []
    assert rel_err(y, reference_causal_conv(x, weight, None, None)) <= 1e-6


def test_kernel_lookup_is_cached(monkeypatch):
    install_fake_kernels(monkeypatch)
    first = ops_backend.selective_scan_kernel()
    monkeypatch.delitem(sys.modules, 'mamba_ssm.ops.selective_scan_interface')
    assert ops_backend.selective_scan_kernel() is first
