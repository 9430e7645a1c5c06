"""Mean over channels of a channel-major (E, B, L) tensor, after an optional bias and activation: the
per-token scores reducers read from the mixer (``mtr_mm.reduction.scores``)."""
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from .backend import inference_channel_mean_kernel, needs_grad, resolve_backend

ACTIVATIONS = ('none', 'softplus', 'relu')


def channel_mean(x: Tensor, bias: Optional[Tensor] = None, activation: str = 'none',
                 backend: Optional[str] = None) -> Tensor:
    """x (E, B, L), bias (E,) or None -> (B, L) in fp32 (or wider): the mean over E of
    ``activation(x + bias)``. On the 'cuda' backend, inference calls that the scan-kernel setting
    gives to Triton (``set_scan_kernel``) read x once in one kernel; otherwise PyTorch ops."""
    if activation not in ACTIVATIONS:
        raise ValueError(f'channel_mean: activation must be one of {list(ACTIVATIONS)}, got {activation!r}')
    if resolve_backend(backend, x) == 'cuda' and not needs_grad(x, bias):
        kernel = inference_channel_mean_kernel(x)
        if kernel is not None:
            return kernel(x, bias, activation)
    if bias is not None:
        x = x + bias[:, None, None]
    x = x.to(torch.promote_types(x.dtype, torch.float32))
    if activation == 'softplus':
        x = F.softplus(x)
    elif activation == 'relu':
        x = x.clamp(min=0)
    return x.mean(0)
