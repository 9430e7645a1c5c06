"""Backend selection for :mod:`mtr_mm.ops`.

Every op has a pure-PyTorch implementation (any device, differentiable) and, on GPU machines, a
fused CUDA one from ``mamba-ssm`` / ``causal-conv1d``. Those packages cannot even be imported
without their compiled CUDA extensions, so they are looked up lazily, once, and a failure only
means "not available".
"""
import functools
import importlib
import math

import torch

BACKENDS = ('auto', 'torch', 'cuda')
_default_backend = 'auto'

# Which kernel runs an inference scan on the 'cuda' backend: mamba-ssm's compiled forward, our Triton one
# (ops/triton_scan.py), or 'auto': each scan takes the one measured faster for its kind of input on an
# H200 (docs/benchmarks.md section 2, ``triton_scan_pays``). Scans under autograd always take mamba-ssm's
# differentiable wrapper (the Triton kernel has no backward).
SCAN_KERNELS = ('mamba', 'triton', 'auto')
_scan_kernel = 'auto'


def set_ops_backend(name: str) -> None:
    """Set the process-wide default backend: 'auto' (default), 'torch' or 'cuda'."""
    global _default_backend
    _default_backend = _check_name(name)


def get_ops_backend() -> str:
    return _default_backend


def set_scan_kernel(name: str) -> None:
    """Set the process-wide inference scan kernel of the 'cuda' backend: 'auto' (default), 'mamba' or
    'triton' (see ``SCAN_KERNELS``)."""
    global _scan_kernel
    if name not in SCAN_KERNELS:
        raise ValueError(f'unknown scan kernel {name!r}; expected one of {SCAN_KERNELS}')
    _scan_kernel = name


def get_scan_kernel() -> str:
    return _scan_kernel


def _check_name(name: str) -> str:
    if name not in BACKENDS:
        raise ValueError(f'unknown ops backend {name!r}; expected one of {BACKENDS}')
    return name


@functools.lru_cache(maxsize=None)
def _import_attr(module: str, attr: str):
    """``module.attr``, or the exception that importing it raised."""
    try:
        return getattr(importlib.import_module(module), attr)
    except Exception as err:  # ImportError without CUDA, but also OSError / RuntimeError from CUDA libs
        return err


def _kernel_or_none(module: str, attr: str):
    found = _import_attr(module, attr)
    return None if isinstance(found, Exception) else found


def selective_scan_kernel():
    """mamba-ssm's ``selective_scan_fn``, or None when it cannot be imported."""
    return _kernel_or_none('mamba_ssm.ops.selective_scan_interface', 'selective_scan_fn')


def causal_conv1d_kernel():
    """causal-conv1d's ``causal_conv1d_fn``, or None when it cannot be imported."""
    return _kernel_or_none('causal_conv1d', 'causal_conv1d_fn')


# The compiled extensions themselves, for inference: their Python wrappers are autograd Functions that
# allocate and reshape more than a forward needs (and the conv one goes through a custom-op layer).
def selective_scan_forward_kernel():
    """``selective_scan_cuda.fwd`` (mamba-ssm's compiled forward), or None."""
    return _kernel_or_none('selective_scan_cuda', 'fwd')


def causal_conv1d_forward_kernel():
    """``causal_conv1d_cuda.causal_conv1d_fwd`` (causal-conv1d's compiled forward), or None."""
    return _kernel_or_none('causal_conv1d_cuda', 'causal_conv1d_fwd')


def triton_scan_kernel():
    """Our Triton ``selective_scan_triton`` (forward only), or None when triton cannot be imported."""
    return _kernel_or_none('mtr_mm.ops.triton_scan', 'selective_scan_triton')


@functools.lru_cache(maxsize=None)
def multiprocessors(device: torch.device) -> int:
    """SMs of a GPU (1 elsewhere): asked once per device, not on every scan of a forward."""
    return torch.cuda.get_device_properties(device).multi_processor_count if device.type == 'cuda' else 1


def fills_gpu(batch: int, dim: int, block_e: int, device: torch.device) -> bool:
    """Whether a Triton grid of one program per (image, ``block_e`` channels) gives every SM two."""
    return batch * math.ceil(dim / block_e) >= 2 * multiprocessors(device)


def triton_scan_pays(u: torch.Tensor) -> bool:
    """Whether 'auto' gives the scan of ``u`` (batch, E, L) to the Triton kernel: when its largest
    channel block (128) fills the GPU. Measured on an H200 at batch 128, E 1,536, 27-197 tokens: 0.21-1.18
    ms (bf16) and 0.28-1.34 ms (fp32) where mamba-ssm's forward costs 0.9-1.6 / 1.0-1.7 ms; at batch 1
    (too few blocks to fill the GPU) it is 2-3x slower than mamba-ssm's."""
    batch, dim, _ = u.shape
    return fills_gpu(batch, dim, 128, u.device)


def _triton_picked(u: torch.Tensor) -> bool:
    """Whether the scan-kernel setting gives inference ops on ``u`` (batch, E, L) to Triton."""
    return _scan_kernel == 'triton' or (_scan_kernel == 'auto' and triton_scan_pays(u))


def inference_scan_kernel(u: torch.Tensor):
    """The Triton scan when the scan-kernel setting picks it for ``u`` (batch, E, L), else None (then
    mamba-ssm's forward runs). An explicit 'triton' that cannot be honoured raises."""
    if not _triton_picked(u):
        return None
    kernel = triton_scan_kernel()
    if kernel is None and _scan_kernel == 'triton':
        err = _import_attr('mtr_mm.ops.triton_scan', 'selective_scan_triton')
        raise RuntimeError(f"scan kernel 'triton' requested but importing triton failed ({type(err).__name__}: {err}). "
                           f"Install triton (it comes with CUDA builds of torch), or set_scan_kernel('mamba').")
    return kernel


def inference_channel_mean_kernel(x: torch.Tensor):
    """Our Triton ``channel_mean_triton`` for a channel-major (E, B, L) ``x`` where the scan of the same
    shape runs in Triton (its score then costs one read), else None (PyTorch ops)."""
    if not _triton_picked(x.transpose(0, 1)):
        return None
    return _kernel_or_none('mtr_mm.ops.triton_scan', 'channel_mean_triton')


def add_rms_norm_kernel():
    """mamba-ssm's Triton ``rms_norm_fn`` (residual add + RMSNorm in one kernel), or None."""
    return _kernel_or_none('mamba_ssm.ops.triton.layer_norm', 'rms_norm_fn')


def needs_grad(*tensors) -> bool:
    """True when autograd will record an op on these tensors (then the differentiable wrappers run)."""
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def clear_kernel_cache() -> None:
    """Forget cached import results (for tests that install fake kernel modules)."""
    _import_attr.cache_clear()


def cuda_kernels_available() -> bool:
    """True iff CUDA is usable and mamba-ssm's selective scan kernel imports."""
    return torch.cuda.is_available() and selective_scan_kernel() is not None


def _unavailable_reason() -> str:
    if not torch.cuda.is_available():
        return 'torch.cuda.is_available() is False'
    err = _import_attr('mamba_ssm.ops.selective_scan_interface', 'selective_scan_fn')
    return f'importing mamba_ssm failed ({type(err).__name__}: {err})'


def resolve_backend(backend, x: torch.Tensor) -> str:
    """Pick 'torch' or 'cuda' for an op on tensor ``x``.

    ``backend=None`` means the process default; 'auto' uses the CUDA kernels only for CUDA tensors
    when they are importable. 'cuda' means mamba-ssm's kernels are usable; ops with no kernel of
    their own there (rms_norm, or conv without the causal-conv1d package) run their PyTorch code on
    the GPU. An explicit 'cuda' that cannot be honoured raises instead of silently falling back, so
    benchmarks and parity checks never measure the wrong implementation.
    """
    name = _default_backend if backend is None else _check_name(backend)
    if name == 'auto':
        return 'cuda' if x.is_cuda and cuda_kernels_available() else 'torch'
    if name == 'cuda' and not cuda_kernels_available():
        raise RuntimeError(
            f"ops backend 'cuda' requested but the mamba-ssm CUDA kernels are unavailable: "
            f"{_unavailable_reason()}. Install them on a GPU machine with `pip install -e .[cuda]`, "
            f"or use backend 'torch' (set_ops_backend('torch') or backend='torch').")
    return name
