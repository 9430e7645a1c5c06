"""The Triton selective-scan forward (mtr_mm/ops/triton_scan.py), run on CPU tensors by Triton's
interpreter (conftest.py sets TRITON_INTERPRET), against the float64 per-token loop of test_ops; and the
scan-kernel setting that routes inference scans to it.
"""
import importlib.util
import os
import sys

import pytest
import torch

from mtr_mm.ops import backend as ops_backend
from mtr_mm.ops import channel_mean, selective_scan, set_scan_kernel
from test_fast_path import HostReads, build, fake_kernels, rel_err, run  # noqa: F401 (fake_kernels: fixture)
from script_runner import REPO
from test_ops import make_scan_inputs, reference_scan


@pytest.fixture(scope='module')
def triton_scan():
    pytest.importorskip('triton')
    if os.environ.get('TRITON_INTERPRET') != '1':
        pytest.skip('runs CPU tensors through Triton\'s interpreter, which conftest.py selects only without a GPU')
    from mtr_mm.ops import triton_scan
    return triton_scan


@pytest.fixture(autouse=True)
def default_scan_kernel():
    yield
    set_scan_kernel('auto')


def model_layout(inputs):
    """The views BiMambaMixer.scan passes: u, delta, z (batch, E, L) of channel-major (E, batch, L)
    buffers; B, C (batch, N, L) of (N, batch, L) ones."""
    return {k: v.transpose(0, 1).contiguous().transpose(0, 1) if v.dim() == 3 else v for k, v in inputs.items()}


def scan_inputs(batch, dim, state, length, dtype=torch.float32, drop=(), softplus=True):
    inputs = model_layout(make_scan_inputs(batch, dim, state, length, dtype))
    if not softplus:  # Δ >= 0 already, as Mamba's decays need
        inputs['delta'] = inputs['delta'].abs()
    return {k: None if k in drop else v for k, v in inputs.items()}


def check(triton_scan, inputs, softplus=True, tolerance=1e-5, **config):
    gated, ungated = triton_scan.selective_scan_triton(**inputs, delta_softplus=softplus, return_ungated=True,
                                                       **config)
    assert gated.dtype == inputs['u'].dtype and gated.shape == inputs['u'].shape
    assert rel_err(gated, reference_scan(**inputs, delta_softplus=softplus)) <= tolerance
    if inputs['z'] is None:
        assert ungated is None
    else:
        assert rel_err(ungated, reference_scan(**dict(inputs, z=None), delta_softplus=softplus)) <= tolerance


# E = 40 is no multiple of any channel block; N = 6 pads the state block to 8.
@pytest.mark.parametrize('length, state, drop, softplus', [
    (1, 16, (), True),
    (27, 16, (), True),
    (27, 6, (), True),
    (97, 16, ('z', ), True),
    (129, 16, ('D', 'delta_bias'), False),
    (27, 16, ('D', 'z', 'delta_bias'), False),
])
def test_fp32_equals_the_float64_loop(triton_scan, length, state, drop, softplus):
    check(triton_scan, scan_inputs(2, 40, state, length, drop=drop, softplus=softplus), softplus)


@pytest.mark.parametrize('length', [27, 129])
def test_bf16_equals_the_float64_loop(triton_scan, length):
    check(triton_scan, scan_inputs(2, 40, 16, length, torch.bfloat16), tolerance=1e-2)


def test_contiguous_inputs_column_major_A_and_several_channel_blocks(triton_scan):
    inputs = make_scan_inputs(2, 40, 16, 27)
    inputs['A'] = inputs['A'].t().contiguous().t()
    check(triton_scan, inputs, block_e=32)  # blocks of 32 + 8 channels


def test_strided_D_and_delta_bias(triton_scan):
    """(E,) weights given as strided views (every other element of a longer vector): the kernel
    indexes them per channel, so they must be read at their strides, not as contiguous."""
    inputs = scan_inputs(2, 40, 16, 9)
    for name in ('D', 'delta_bias'):
        inputs[name] = torch.stack([inputs[name], torch.full_like(inputs[name], 50.)], 1)[:, 0]
        assert inputs[name].stride() == (2, )
    check(triton_scan, inputs)


def test_block_config_fills_the_gpu(triton_scan):
    assert triton_scan.block_config(128, 1536, torch.device('cpu')) == triton_scan.BLOCK_CONFIGS[0]
    assert triton_scan.block_config(1, 40, torch.device('cpu')) == triton_scan.BLOCK_CONFIGS[-1]


def test_unit_stride_along_the_sequence_is_required(triton_scan):
    inputs = make_scan_inputs(1, 8, 4, 6)
    inputs['u'] = inputs['u'].transpose(1, 2).contiguous().transpose(1, 2)
    with pytest.raises(ValueError, match='u needs unit stride along L'):
        triton_scan.selective_scan_triton(**inputs, delta_softplus=True)


@pytest.mark.parametrize('kernel, batch, dtype, expected', [
    ('mamba', 2, torch.bfloat16, 'mamba'), ('triton', 2, torch.float32, 'triton'), ('triton', 1, torch.bfloat16, 'triton'),
    ('auto', 2, torch.bfloat16, 'triton'), ('auto', 2, torch.float32, 'triton'),
    ('auto', 1, torch.bfloat16, 'mamba'), ('auto', 1, torch.float32, 'mamba')])  # one 128-channel block (a CPU counts as one SM): too few to fill it
def test_scan_kernel_setting_routes_inference_scans(triton_scan, fake_kernels, kernel, batch, dtype, expected):
    inputs = scan_inputs(batch, 8, 4, 27, dtype)
    set_scan_kernel(kernel)
    with torch.inference_mode():
        y, ungated = selective_scan(**inputs, backend='cuda', return_ungated=True)
    assert fake_kernels.calls == ([] if expected == 'triton' else ['scan'])
    tolerance = 1e-5 if dtype == torch.float32 else 1e-2
    assert rel_err(y, reference_scan(**inputs)) <= tolerance
    assert rel_err(ungated, reference_scan(**dict(inputs, z=None))) <= tolerance


def test_training_scans_keep_the_differentiable_wrapper(triton_scan, fake_kernels):
    inputs = scan_inputs(1, 8, 4, 5)
    inputs['u'].requires_grad_()
    set_scan_kernel('triton')
    with pytest.raises(AssertionError, match='scan_fn: the test asserts which path runs'):
        selective_scan(**inputs, backend='cuda')


def test_reduced_forward_through_the_triton_scan(triton_scan, fake_kernels):
    """A whole MTR-reduced Vim forward with every scan in the Triton kernel: the PyTorch ops' logits,
    and nothing read back to the host (so CUDA-graph capture is possible)."""
    model = build(dict(method='mtr', schedule=dict(layers=[0, 1], r=3)))
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    expected = run(model, images, 'torch')
    set_scan_kernel('triton')
    probe = HostReads()
    with probe:
        actual = run(model, images, 'cuda')
    assert probe.reads == [] and 'scan' not in fake_kernels.calls
    assert rel_err(actual, expected) <= 1e-5


def test_explicit_triton_without_triton_raises(fake_kernels, monkeypatch):
    monkeypatch.setitem(sys.modules, 'triton', None)  # `import triton` fails
    monkeypatch.delitem(sys.modules, 'mtr_mm.ops.triton_scan', raising=False)
    ops_backend.clear_kernel_cache()
    inputs = scan_inputs(1, 8, 4, 5)
    set_scan_kernel('auto')  # 'auto' falls back to mamba-ssm's forward, and the scores to PyTorch ops
    with torch.inference_mode():
        selective_scan(**inputs, backend='cuda')
        x, bias = torch.randn(8, 2, 5), torch.randn(8)
        score = channel_mean(x, bias, 'softplus', backend='cuda')
    assert fake_kernels.calls == ['scan']
    assert rel_err(score, torch.nn.functional.softplus(x.double() + bias.double()[:, None, None]).mean(0)) <= 1e-6
    set_scan_kernel('triton')
    with pytest.raises(RuntimeError, match="scan kernel 'triton' requested but importing triton failed"):
        selective_scan(**inputs, backend='cuda')
    with pytest.raises(ValueError, match='unknown scan kernel'):
        set_scan_kernel('cuda')


def test_bench_scan_times_the_triton_scan(triton_scan):
    """bench_scan's implementations for a GPU, run here through the interpreter: the Triton scan with
    its own block choice and a given one, both within fp32 rounding of the reference loop."""
    spec = importlib.util.spec_from_file_location('bench_scan', REPO / 'tools/benchmarks/bench_scan.py')
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    impls = bench.implementations(torch.device('cuda'), 8, ['32x1x1'])
    inputs = bench.make_inputs(2, 40, 16, 9, torch.device('cpu'), layout='model')
    rows = bench.summarise(*bench.run(impls, inputs, torch.device('cpu'), warmup=1, repeats=1))
    errors = {r['name']: r['max_rel_err'] for r in rows if 'Triton' in r['name']}
    assert set(errors) == {'mtr_mm Triton scan', 'mtr_mm Triton scan 32x1x1'}
    assert max(errors.values()) <= 1e-5


@pytest.mark.parametrize('activation', ['none', 'softplus', 'relu'])
@pytest.mark.parametrize('with_bias', [True, False])
def test_channel_mean_matches_a_float64_mean(triton_scan, activation, with_bias):
    """The one-pass score kernel on the mixer's layout: (E, B, L) of 70 channels (not a multiple of the
    32-channel tile) and 100 tokens (two token blocks, the second partial), bf16 and fp32."""
    gen = torch.Generator().manual_seed(3)
    for dtype, tolerance in ((torch.float32, 1e-6), (torch.bfloat16, 1e-6)):
        x = (torch.randn(70, 3, 100, generator=gen) * 3).to(dtype)
        bias = torch.randn(70, generator=gen) if with_bias else None
        expected = x.double() + (bias.double()[:, None, None] if with_bias else 0)
        expected = dict(none=expected, softplus=torch.nn.functional.softplus(expected),
                        relu=expected.clamp(min=0))[activation].mean(0)
        got = triton_scan.channel_mean_triton(x, bias, activation)
        assert got.dtype == torch.float32 and got.shape == (3, 100)
        assert rel_err(got, expected) <= tolerance  # the inputs are exact: only the fp32 sum rounds


def test_scores_take_the_channel_mean_kernel_where_the_scan_is_triton(triton_scan, fake_kernels, monkeypatch):
    calls = []
    kernel = triton_scan.channel_mean_triton
    monkeypatch.setattr(triton_scan, 'channel_mean_triton', lambda *a, **k: calls.append(1) or kernel(*a, **k))
    ops_backend.clear_kernel_cache()
    x, bias = torch.randn(8, 2, 5), torch.randn(8)
    for setting, expected_calls in (('mamba', 0), ('triton', 1)):
        set_scan_kernel(setting)
        with torch.inference_mode():
            got = channel_mean(x, bias, 'softplus', backend='cuda')
        assert len(calls) == expected_calls
        assert rel_err(got, torch.nn.functional.softplus(x.double() + bias.double()[:, None, None]).mean(0)) <= 1e-6
    with pytest.raises(ValueError, match="activation must be one of"):
        channel_mean(x, bias, 'gelu')
