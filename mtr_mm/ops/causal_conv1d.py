"""Depthwise causal 1-D convolution (the ``conv1d`` in front of every Mamba scan)."""
from typing import Optional

import torch
import torch.nn.functional as F

from .backend import causal_conv1d_forward_kernel, causal_conv1d_kernel, needs_grad, resolve_backend


def causal_conv1d(x: torch.Tensor,
                  weight: torch.Tensor,
                  bias: Optional[torch.Tensor] = None,
                  activation: Optional[str] = None,
                  backend: Optional[str] = None) -> torch.Tensor:
    """Causal depthwise conv: output t sees inputs t-K+1..t only.

    Args:
        x: (batch, E, L).
        weight: (E, K), or the (E, 1, K) of an ``nn.Conv1d`` checkpoint.
        bias: (E,) or None.
        activation: None or 'silu'.
        backend: None (process default), 'auto', 'torch' or 'cuda'.

    Returns:
        (batch, E, L), equal to ``F.conv1d(x, w, bias, padding=K-1, groups=E)[..., :L]``.
    """
    if activation not in (None, 'silu'):
        raise ValueError(f"activation must be None or 'silu', got {activation!r}")
    if weight.dim() == 3:
        weight = weight.squeeze(1)
    if resolve_backend(backend, x) == 'cuda':
        forward = causal_conv1d_forward_kernel()
        if forward is not None and not needs_grad(x, weight, bias):
            # The output keeps x's memory layout (empty_like), so a channel-major input stays
            # channel-major and the projections after the conv read it without a copy.
            out = torch.empty_like(x)
            forward(x, weight, bias, None, None, out, None, activation == 'silu')
            return out
        kernel = causal_conv1d_kernel()
        # causal-conv1d is a separate package; without it the cuDNN conv below is fine on GPU.
        if kernel is not None:
            return kernel(x, weight, bias, activation=activation)
    return causal_conv1d_torch(x, weight, bias, activation)


def causal_conv1d_torch(x, weight, bias=None, activation=None):
    channels, width = weight.shape
    y = F.conv1d(x, weight.unsqueeze(1), bias, padding=width - 1, groups=channels)
    y = y[..., :x.shape[-1]]  # the right padding only produced outputs that look into the future
    return F.silu(y) if activation == 'silu' else y
