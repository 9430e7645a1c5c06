"""Selective scan (the S6 recurrence of Mamba): mamba-ssm's CUDA kernel or a chunked PyTorch scan.

For one channel e and state n, with Δ = softplus(delta + delta_bias)::

    h_t = exp(Δ_t A) ⊙ h_{t-1} + Δ_t B_t u_t        y_t = <h_t, C_t> + D u_t,   y *= silu(z)

The PyTorch version never steps through the whole sequence one token at a time. The sequence is cut
into chunks of T tokens and all chunks of a block are scanned side by side, so a Python step works
on (batch, chunks, E, N) at once (T + chunks steps per block instead of T * chunks):

1. scan every chunk from a zero state, to get the state each chunk would leave behind;
2. carry the true state across chunk boundaries (one step per chunk, using the chunk's total decay);
3. rescan every chunk from its true entry state and read y off.

Decays only ever enter as exp of non-positive numbers (Δ >= 0 and A <= 0, as in Mamba), so nothing
overflows.
Blocks bound the temporaries (see ``BLOCK_NUMEL``). On CPU that keeps them cache-sized, which, more
than the arithmetic, is what makes this fast there, and keeps long, wide inputs memory-sane. On GPU
(used when mamba-ssm is not installed) blocks are large, as the cost there is kernel launches.
"""
import math
from typing import Optional

import torch
import torch.nn.functional as F

from .backend import resolve_backend, selective_scan_kernel

DEFAULT_CHUNK_SIZE = 8
# Elements in one (T, batch, chunks, E, N) temporary. CPU: 8 MiB in fp32; larger blocks fall out of
# cache and past glibc's mmap threshold, where every temporary is fresh page-faulted memory (~8x
# slower). GPU: 256 MiB, few enough blocks that launches stay in the hundreds.
BLOCK_NUMEL = {'cpu': 1 << 21, 'cuda': 1 << 26}


def selective_scan(u: torch.Tensor,
                   delta: torch.Tensor,
                   A: torch.Tensor,
                   B: torch.Tensor,
                   C: torch.Tensor,
                   D: Optional[torch.Tensor] = None,
                   z: Optional[torch.Tensor] = None,
                   delta_bias: Optional[torch.Tensor] = None,
                   delta_softplus: bool = True,
                   backend: Optional[str] = None) -> torch.Tensor:
    """Selective scan with the semantics of mamba-ssm's ``selective_scan_fn``.

    Args:
        u, delta: (batch, E, L); ``delta`` before ``delta_bias`` and softplus.
        A: (E, N), negative.  B, C: (batch, N, L).
        D, delta_bias: (E,) or None.  z: (batch, E, L) gate or None.
        delta_softplus: apply softplus to ``delta + delta_bias``.
        backend: None (process default), 'auto', 'torch' or 'cuda'.

    Returns:
        y: (batch, E, L) in ``u.dtype``; accumulation is fp32 (or wider) on both backends.
    """
    if resolve_backend(backend, u) == 'cuda':
        # The kernel wants fp32 weights; .float() is a no-op for Vim's fp32 parameters.
        # delta_softplus always goes by keyword: mamba-ssm's default is False, ours is True.
        return selective_scan_kernel()(
            u, delta, A.float(), B, C,
            D=None if D is None else D.float(),
            z=z,
            delta_bias=None if delta_bias is None else delta_bias.float(),
            delta_softplus=delta_softplus)
    return selective_scan_torch(u, delta, A, B, C, D, z, delta_bias, delta_softplus)


def selective_scan_torch(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=True,
                         chunk_size=DEFAULT_CHUNK_SIZE, block_numel=None):
    """Chunked PyTorch selective scan; any device, differentiable. Arguments as ``selective_scan``,
    plus the chunk length T and the block budget (default: ``BLOCK_NUMEL`` for ``u``'s device)."""
    out_dtype = u.dtype
    dtype = torch.promote_types(u.dtype, torch.float32)
    u, delta, A, B, C = (t.to(dtype) for t in (u, delta, A, B, C))
    if delta_bias is not None:
        delta = delta + delta_bias.to(dtype)[:, None]
    if delta_softplus:
        delta = F.softplus(delta)

    if block_numel is None:
        block_numel = BLOCK_NUMEL.get(u.device.type, BLOCK_NUMEL['cpu'])
    y = _scan(u, delta, A, B, C, chunk_size, block_numel)
    if D is not None:
        y = y + D.to(dtype)[:, None] * u
    if z is not None:
        y = y * F.silu(z.to(dtype))
    return y.to(out_dtype)


def _scan(u, delta, A, B, C, chunk_size, block_numel):
    """y_t = <h_t, C_t> for h_t = exp(Δ_t A) h_{t-1} + Δ_t B_t u_t, h_0 = 0."""
    batch, dim, length = u.shape
    state = A.shape[1]
    T = min(chunk_size, length)
    # Padding steps have Δ = 0: decay 1 and input 0, so they leave the state untouched.
    padded = math.ceil(length / T) * T
    u, delta, B, C = (F.pad(t, (0, padded - length)) for t in (u, delta, B, C))
    chunks_per_block = max(1, block_numel // (T * batch * dim * state))
    block = chunks_per_block * T

    h = u.new_zeros(batch, dim, state)
    ys = []
    for start in range(0, padded, block):
        part = slice(start, start + block)
        y, h = _scan_block(u[..., part], delta[..., part], A, B[..., part], C[..., part], h, T)
        ys.append(y)
    return torch.cat(ys, -1)[..., :length]


def _scan_block(u, delta, A, B, C, h, T):
    """Scan one block of whole chunks from entry state ``h`` (batch, E, N); returns (y, last state)."""
    batch, dim, length = u.shape
    delta_t = _step_major(delta, T)                        # (T, batch, chunks, E)
    a = (delta_t[..., None] * A).exp_()                    # (T, batch, chunks, E, N) step decays
    x = _step_major(delta * u, T)[..., None] * _step_major(B, T)[..., None, :]  # step inputs
    C_t = _step_major(C, T)[..., None]                     # (T, batch, chunks, N, 1)

    entry = [h]
    if a.shape[2] > 1:
        ends = _chunk_end_states(a[:, :, :-1], x[:, :, :-1])
        decays = torch.exp(delta_t[:, :, :-1].sum(0)[..., None] * A)  # whole-chunk decays
        for c in range(ends.shape[1]):
            entry.append(torch.addcmul(ends[:, c], decays[:, c], entry[-1]))
    h = torch.stack(entry, 1)                              # (batch, chunks, E, N)

    ys = []
    for t in range(T):
        h = torch.addcmul(x[t], a[t], h)
        ys.append(h @ C_t[t])                              # (batch, chunks, E, 1)
    y = torch.stack(ys)[..., 0].permute(1, 3, 2, 0).reshape(batch, dim, length)
    return y, h[:, -1]


def _chunk_end_states(a, x):
    """State at the end of every chunk when it starts from zero: (batch, chunks, E, N)."""
    s = x[0]
    for t in range(1, a.shape[0]):
        s = torch.addcmul(x[t], a[t], s)
    return s


def _step_major(t, T):
    """(batch, X, chunks*T) -> (T, batch, chunks, X), contiguous: one step of all chunks per slice."""
    batch, channels, length = t.shape
    return t.view(batch, channels, length // T, T).permute(3, 0, 2, 1).contiguous()
