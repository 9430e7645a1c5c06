"""The CUDA inference path of the Vim forward, exercised on CPU.

Fake compiled kernels stand in for ``selective_scan_cuda.fwd``, ``causal_conv1d_cuda.causal_conv1d_fwd``
and mamba-ssm's Triton ``rms_norm_fn``: each enforces the real kernel's contract (argument order, shapes,
unit stride along L, dtypes, preallocated output) and computes in float64 from the formulas, sharing no
code with mtr_mm. A whole forward through them must equal the PyTorch-ops forward, with and without token
reduction, and training must keep to the differentiable wrappers.
"""
import sys
import traceback
import types

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from mtr_mm.engine.hooks import InputCheckHook, non_finite_field
from mtr_mm.models import VimBackbone, VisionMamba
from mtr_mm.ops import backend as ops_backend
from mtr_mm.ops import set_ops_backend, set_scan_kernel
from mtr_mm.reduction import REDUCERS
from mtr_mm.reduction._matching import sort_by_position
from mtr_mm.reduction.restore import RESTORE_MODES
from test_ops import reference_scan

DEPTH = 3


class FakeKernels:
    """Records calls; checks each kernel's input contract as the compiled code does."""

    def __init__(self):
        self.calls = []

    def scan_fwd(self, u, delta, A, B, C, D, z, delta_bias, delta_softplus):
        self.calls.append('scan')
        batch, dim, length = u.shape
        for name, t in dict(u=u, delta=delta, z=z).items():
            assert t.shape == (batch, dim, length), name
            assert t.stride(-1) == 1, f'{name} needs unit stride along L'
        assert B.dim() == 4 and B.shape[:2] == (batch, 1) and B.stride(-1) == 1  # (batch, groups, N, L)
        assert C.shape == B.shape and C.stride(-1) == 1
        assert A.dtype == D.dtype == delta_bias.dtype == torch.float32
        assert delta.dtype == B.dtype == C.dtype == z.dtype == u.dtype
        y = reference_scan(u, delta, A, B[:, 0], C[:, 0], D, None, delta_bias, delta_softplus)
        gated = y * F.silu(z.double())
        out, out_z = torch.empty_like(delta), torch.empty_like(z)  # the kernel's allocation
        return [out.copy_(y), torch.empty(0), out_z.copy_(gated)]

    def conv_fwd(self, x, weight, bias, seq_idx, initial_states, out, final_states, silu):
        self.calls.append('conv')
        assert x.stride(2) == 1 and weight.dim() == 2 and out.shape == x.shape
        assert seq_idx is None and initial_states is None and final_states is None
        width = weight.shape[1]
        xp = F.pad(x.double(), (width - 1, 0))
        y = sum(xp[..., k:k + x.shape[-1]] * weight.double()[:, k, None] for k in range(width)) + bias.double()[:, None]
        out.copy_(y * torch.sigmoid(y) if silu else y)

    def add_rms_norm(self, x, weight, bias, residual=None, prenorm=False, residual_in_fp32=False, eps=1e-6):
        self.calls.append('norm')
        assert bias is None and prenorm and residual_in_fp32 and x.stride(-1) == 1
        summed = x.double() if residual is None else x.double() + residual.double()
        y = summed * torch.rsqrt(summed.pow(2).mean(-1, keepdim=True) + eps) * weight.double()
        return y.to(x.dtype), summed.float()

    def autograd_wrapper(self, name):
        def wrapper(*args, **kwargs):
            self.calls.append(name)
            raise AssertionError(f'{name}: the test asserts which path runs')
        return wrapper


@pytest.fixture
def fake_kernels(monkeypatch):
    fakes = FakeKernels()
    modules = {
        'selective_scan_cuda': dict(fwd=fakes.scan_fwd),
        'causal_conv1d_cuda': dict(causal_conv1d_fwd=fakes.conv_fwd),
        'mamba_ssm': {}, 'mamba_ssm.ops': {}, 'mamba_ssm.ops.triton': {},
        'mamba_ssm.ops.triton.layer_norm': dict(rms_norm_fn=fakes.add_rms_norm),
        'mamba_ssm.ops.selective_scan_interface': dict(selective_scan_fn=fakes.autograd_wrapper('scan_fn')),
        'causal_conv1d': dict(causal_conv1d_fn=fakes.autograd_wrapper('conv_fn')),
    }
    for name, attrs in modules.items():
        module = types.ModuleType(name)
        for key, value in attrs.items():
            setattr(module, key, value)
        monkeypatch.setitem(sys.modules, name, module)
    # 'a GPU is there' for the ops dispatch only (patching torch.cuda.is_available would reach mmengine)
    monkeypatch.setattr(ops_backend, 'cuda_kernels_available', lambda: True)
    ops_backend.clear_kernel_cache()
    set_scan_kernel('mamba')  # these fakes are mamba-ssm's kernels ('auto' may pick the Triton scan)
    yield fakes
    set_ops_backend('auto')
    set_scan_kernel('auto')
    ops_backend.clear_kernel_cache()


# VideoMamba: class token in front, scan directions summed, 2-frame clips (frame-major tokens)
VIDEOMAMBA = dict(cls_token_position='front', direction_merge='sum', num_frames=2)


def build(reduction=None, cls=True, **family):
    torch.manual_seed(0)
    model = VisionMamba(img_size=64, embed_dims=32, depth=DEPTH, num_classes=5, with_cls_token=cls,
                        reduction=reduction, **family).eval()
    with torch.no_grad():  # non-trivial norms, conv biases and D
        for name, p in model.named_parameters():
            if name.endswith(('norm.weight', 'norm_f.weight', 'conv1d.bias', 'conv1d_b.bias', '.D', '.D_b')):
                p.add_(torch.randn_like(p) * 0.2)
    return model


def run(model, images, backend):
    set_ops_backend(backend)
    try:
        with torch.inference_mode():
            return model(images)
    finally:
        set_ops_backend('auto')


def rel_err(a, b):
    return ((a.double() - b.double()).abs().max() / b.double().abs().max()).item()


@pytest.mark.parametrize('reduction', [None, dict(method='mtr', schedule=dict(layers=[0, 1], r=3)),
                                       dict(method='tome', schedule=dict(layers=[1], r=4))],
                         ids=['unreduced', 'mtr', 'tome'])
def test_kernel_path_equals_pytorch_ops(fake_kernels, reduction):
    model = build(reduction)
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    expected = run(model, images, 'torch')
    assert fake_kernels.calls == []
    actual = run(model, images, 'cuda')
    assert rel_err(actual, expected) <= 1e-5
    # per block: one fused add+norm, a conv and a scan per direction; the final norm fused too
    assert fake_kernels.calls.count('scan') == fake_kernels.calls.count('conv') == 2 * DEPTH
    assert fake_kernels.calls.count('norm') == DEPTH + 1
    assert 'scan_fn' not in fake_kernels.calls and 'conv_fn' not in fake_kernels.calls


@pytest.mark.parametrize('reduction', [None, dict(method='mtr', schedule=dict(layers=[0, 1], r=5))],
                         ids=['unreduced', 'mtr'])
def test_kernel_path_equals_pytorch_ops_for_videomamba_clips(fake_kernels, reduction):
    """Front class token, summed directions and 1 + 2 x 16 space-time tokens through the kernels."""
    model = build(reduction, **VIDEOMAMBA)
    clips = torch.randn(2, 3, 2, 64, 64, generator=torch.Generator().manual_seed(1))
    expected = run(model, clips, 'torch')
    actual = run(model, clips, 'cuda')
    assert rel_err(actual, expected) <= 1e-5
    assert fake_kernels.calls.count('scan') == 2 * DEPTH and fake_kernels.calls.count('norm') == DEPTH + 1


def test_mtr_scores_read_the_same_delta_on_both_paths(fake_kernels):
    model = build(dict(method='mtr', schedule=dict(layers=[0], r=5)))
    images = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    kept = {}
    for backend in ('torch', 'cuda'):
        model.token_observers[:] = [lambda index, state, b=backend: kept.setdefault(b, state.positions.clone())]
        run(model, images, backend)
    assert torch.equal(kept['torch'], kept['cuda'])


@pytest.mark.parametrize('method', ['utr', 'hsa'])
def test_clipped_y_scores_are_the_same_on_both_paths(fake_kernels, method):
    """The compiled forward returns y before the gate as ``out`` (and the gated y as ``out_z``):
    the clip(y) score read from it equals the PyTorch path's, and so does the choice of tokens."""
    model = build(dict(method=method, schedule=dict(layers=[0], r=5)))
    images = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    kept, scores = {}, {}
    hidden = torch.randn(2, 9, 32, generator=torch.Generator().manual_seed(3))
    for backend in ('torch', 'cuda'):
        model.token_observers[:] = [lambda index, state, b=backend: kept.setdefault(b, state.positions.clone())]
        run(model, images, backend)
        set_ops_backend(backend)
        with torch.inference_mode():
            scores[backend] = model.layers[0].mixer(hidden, 'y_clip')[1]
        set_ops_backend('auto')
    assert torch.equal(kept['torch'], kept['cuda'])
    torch.testing.assert_close(scores['cuda'], scores['torch'], rtol=1e-5, atol=1e-6)


def test_clipped_y_score_under_autograd_gates_the_ungated_scan(fake_kernels, monkeypatch):
    """With gradients on, the differentiable wrapper (which returns only the gated y) runs without
    the gate, and the gate is applied outside: same output and score as the PyTorch ops."""
    def scan_fn(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
        fake_kernels.calls.append('scan_fn')
        return reference_scan(u, delta, A, B, C, D, z, delta_bias, delta_softplus).to(u.dtype)

    monkeypatch.setattr(sys.modules['mamba_ssm.ops.selective_scan_interface'], 'selective_scan_fn', scan_fn)
    monkeypatch.setattr(sys.modules['causal_conv1d'], 'causal_conv1d_fn', None)
    ops_backend.clear_kernel_cache()
    mixer = build().layers[0].mixer
    hidden = torch.randn(2, 9, 32, generator=torch.Generator().manual_seed(3), requires_grad=True)
    results = {}
    for backend in ('torch', 'cuda'):
        set_ops_backend(backend)
        results[backend] = mixer(hidden, 'y_clip')
        set_ops_backend('auto')
    assert fake_kernels.calls.count('scan_fn') == 2
    for got, expected in zip(results['cuda'], results['torch']):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_training_uses_the_differentiable_wrappers(fake_kernels):
    model = build().train()
    set_ops_backend('cuda')
    with pytest.raises(AssertionError, match='conv_fn: the test asserts which path runs'):
        model(torch.randn(1, 3, 64, 64))
    assert fake_kernels.calls[-1] == 'conv_fn'


def test_kernels_absent_fall_back_to_pytorch_ops(monkeypatch):
    """Without the compiled extensions 'auto' runs the PyTorch ops: the same numbers as 'torch'."""
    for name in ('selective_scan_cuda', 'causal_conv1d_cuda', 'mamba_ssm', 'causal_conv1d'):
        monkeypatch.setitem(sys.modules, name, None)
    ops_backend.clear_kernel_cache()
    model = build(dict(method='mtr', schedule=dict(layers=[1], r=3)))
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    assert torch.equal(run(model, images, 'auto'), run(model, images, 'torch'))
    ops_backend.clear_kernel_cache()


def test_cuda_graph_switch_is_eager_off_gpu():
    """cuda_graph only changes how a CUDA forward is issued: on CPU it is the eager forward."""
    model = build(dict(method='mtr', schedule=dict(layers=[1], r=3)))
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    expected = run(model, images, 'torch')
    model.cuda_graph = True
    assert torch.equal(run(model, images, 'torch'), expected)
    assert all(not runner.graphs for runner in model._graph_runners.values())


class HostReads(TorchDispatchMode):
    """Records the ops called from mtr_mm's own code that make the host wait for the data: a scalar read
    (``.item()``, ``bool()``/``int()`` of a tensor), a data-dependent shape (``nonzero``, boolean-mask
    indexing, ``unique``, ``masked_select``). Such an op would stall every reduced forward on the GPU
    and break CUDA-graph capture."""
    OPS = {'_local_scalar_dense', 'nonzero', 'masked_select', 'unique_dim', '_unique2', 'unique_consecutive',
           'repeat_interleave', 'equal', 'is_nonzero'}

    def __init__(self):
        super().__init__()
        self.reads = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func._schema.name.split('::')[-1]
        masks = name.startswith(('index', '_index_put')) and isinstance(args[1], (list, tuple)) and any(
            isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in args[1])
        if name in self.OPS or masks:
            caller = next((f for f in reversed(traceback.extract_stack()[:-1]) if '/torch/' not in f.filename), None)
            if caller is not None and '/mtr_mm/' in caller.filename:
                self.reads.append(f'{name} at {caller.filename.split("/mtr_mm/")[-1]}:{caller.lineno}')
        return func(*args, **(kwargs or {}))


def test_host_read_probe_sees_scalar_reads_and_masks():
    probe = HostReads()
    with probe:
        t = torch.arange(3.)
        t.sum().item(), bool(t[0] > 0), t[t > 0]
    assert probe.reads == []  # called from this test, not from mtr_mm
    with probe:
        sort_by_position(torch.tensor([[2, 0, 1]]), torch.tensor([[0, 2]]))
    assert probe.reads == []  # a pure function on tensors
    with probe:
        non_finite_field({'pred': torch.ones(2)})  # a test-time check that must look at the values
    assert len(probe.reads) == 1 and 'engine/hooks.py' in probe.reads[0]


def test_the_output_check_reads_the_host_once_per_batch():
    """InputCheckHook looks at every test output for NaN / inf: one host read per batch (and device),
    not one per sample and field, unless something is not finite and it names which."""
    from mmpretrain.structures import DataSample
    samples = [DataSample(metainfo=dict(img_path=f'{i}.jpg')).set_pred_score(torch.rand(3)) for i in range(8)]
    for sample in samples:
        sample.set_field(DataSample(nested=torch.rand(2)), 'extra')
    probe = HostReads()
    with probe:
        InputCheckHook().after_test_iter(None, 0, outputs=samples)
    assert len(probe.reads) == 1, probe.reads
    samples[5].extra.nested[1] = float('inf')
    with pytest.raises(FloatingPointError, match='extra.nested of 5.jpg holds NaN or inf'):
        InputCheckHook().after_test_iter(None, 0, outputs=samples)


@pytest.mark.parametrize('backend', ['torch', 'cuda'])
@pytest.mark.parametrize('method', sorted(REDUCERS.module_dict))
def test_reduced_forwards_never_wait_for_the_data(fake_kernels, backend, method):
    """Every reducer, on both paths, classification (class token sorted and at the middle) and dense
    (every restoration): once built, a reduced forward reads nothing of the data on the host."""
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    models = [build(dict(method=method, schedule=dict(layers=[0, 1], r=3), cls_position=position))
              for position in (('sorted', 'middle') if method != 'tome' else ('sorted', ))]
    if method != 'evit':  # EViT needs a class token
        models += [VimBackbone(embed_dims=32, depth=DEPTH, img_size=64, out_type='featmap', out_indices=[0, 2],
                               reduction=dict(method=method, schedule=dict(layers=[0, 1], r=3), restore=restore))
                   .eval() for restore in RESTORE_MODES]
    for model in models:
        run(model, images, backend)  # the first call may solve and cache the schedule
        probe = HostReads()
        with probe:
            run(model, images, backend)
        assert probe.reads == [], f'{method}: {probe.reads}'
