"""RMSNorm as used by Vim: no bias, statistics in fp32."""
from typing import Optional

import torch

from .backend import resolve_backend


def rms_norm(x: torch.Tensor,
             weight: torch.Tensor,
             eps: float = 1e-5,
             backend: Optional[str] = None) -> torch.Tensor:
    """``x * rsqrt(mean(x^2, -1) + eps) * weight``, computed in fp32, returned in ``x.dtype``.

    One implementation serves both backends (it is memory-bound, so a fused kernel buys little);
    ``backend`` is still resolved so that an impossible 'cuda' request fails like the other ops.
    """
    resolve_backend(backend, x)
    x32 = x.float()
    y = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps) * weight.float()
    return y.to(x.dtype)
