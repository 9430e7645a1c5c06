"""Mamba ops with two implementations each: fused CUDA kernels (mamba-ssm, causal-conv1d) when
they are importable and the inputs are on a GPU, plain PyTorch otherwise. See ``backend``."""
from .backend import cuda_kernels_available, get_ops_backend, get_scan_kernel, set_ops_backend, set_scan_kernel
from .causal_conv1d import causal_conv1d
from .channel_mean import channel_mean
from .rms_norm import add_rms_norm, rms_norm
from .selective_scan import selective_scan

__all__ = [
    'selective_scan', 'causal_conv1d', 'channel_mean', 'rms_norm', 'add_rms_norm', 'set_ops_backend', 'get_ops_backend',
    'set_scan_kernel', 'get_scan_kernel', 'cuda_kernels_available'
]
