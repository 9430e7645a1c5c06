"""RMSNorm as used by Vim: no bias, statistics in fp32; and the block's residual add fused with it."""
from typing import Optional, Tuple

import torch

from .backend import add_rms_norm_kernel, resolve_backend


def rms_norm(x: torch.Tensor,
             weight: torch.Tensor,
             eps: float = 1e-5,
             backend: Optional[str] = None) -> torch.Tensor:
    """``x * rsqrt(mean(x^2, -1) + eps) * weight``, computed in fp32, returned in ``x.dtype``.

    One implementation serves both backends (it is memory-bound, so a fused kernel buys little
    alone); ``backend`` is still resolved so that an impossible 'cuda' request fails like the other
    ops.
    """
    resolve_backend(backend, x)
    x32 = x.float()
    y = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps) * weight.float()
    return y.to(x.dtype)


def add_rms_norm(x: torch.Tensor,
                 residual: Optional[torch.Tensor],
                 weight: torch.Tensor,
                 eps: float = 1e-5,
                 backend: Optional[str] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """The pre-norm step of a Vim block: ``residual = residual + x`` (just ``x`` when ``residual`` is
    None), kept in fp32, and ``rms_norm(residual)``. Returns ``(normed, residual)``.

    With the CUDA backend this is mamba-ssm's Triton kernel (one pass: read x and residual, write both
    outputs), as the official Vim calls it; ``normed`` then has ``x``'s dtype (the PyTorch path
    returns fp32): the next projection casts either to its own dtype, with the same rounding.
    """
    if resolve_backend(backend, x) == 'cuda':
        kernel = add_rms_norm_kernel()
        if kernel is not None:
            return kernel(x, weight, None, residual=residual, prenorm=True, residual_in_fp32=True, eps=eps)
    residual = (x if residual is None else residual + x).float()
    return rms_norm(residual.to(weight.dtype), weight, eps), residual
