"""Selective scan (the S6 recurrence of Mamba): mamba-ssm's CUDA kernel (or, for inference and when
selected by ``set_scan_kernel``, our Triton one) or a chunked PyTorch scan.

For one channel e and state n, with Δ = softplus(delta + delta_bias)::

    h_t = exp(Δ_t A) ⊙ h_{t-1} + Δ_t B_t u_t        y_t = <h_t, C_t> + D u_t,   y *= silu(z)

The PyTorch version does not step through the sequence one token at a time. The sequence is cut
into chunks of T tokens, and the chunks of a block are scanned side by side, so each Python step
advances all of them at once, on a (batch, chunks, E, N) state (2T + chunks steps per block of
T * chunks tokens):

1. scan every chunk from a zero state, to get the state each chunk would leave behind;
2. carry the true state across chunk boundaries (one step per chunk, using the chunk's total decay
   exp(A ΣΔ));
3. rescan every chunk from its true entry state and read y off.

Decays only ever enter as exp of non-positive numbers (Δ >= 0 and A <= 0, as in Mamba), so nothing
overflows. Nothing of size (batch, E, L, N) is ever materialised: each step computes its own
decays and inputs, so on CPU the working set stays in cache (memory traffic, not arithmetic, is
what bounds this op there), and long, wide inputs stay memory-sane.
"""
import math
from typing import Optional

import torch
import torch.nn.functional as F

from .backend import (inference_scan_kernel, needs_grad, resolve_backend, selective_scan_forward_kernel,
                      selective_scan_kernel)

DEFAULT_CHUNK_SIZE = 8
# Elements of one step's (batch, chunks, E, N) state, which sets the chunks per block. CPU: 512 KiB
# in fp32, so a step's few operands stay in L2. GPU: large, as the cost there is kernel launches.
STEP_NUMEL = {'cpu': 1 << 17, 'cuda': 1 << 24}


def selective_scan(u: torch.Tensor,
                   delta: torch.Tensor,
                   A: torch.Tensor,
                   B: torch.Tensor,
                   C: torch.Tensor,
                   D: Optional[torch.Tensor] = None,
                   z: Optional[torch.Tensor] = None,
                   delta_bias: Optional[torch.Tensor] = None,
                   delta_softplus: bool = True,
                   backend: Optional[str] = None,
                   return_ungated: bool = False):
    """Selective scan with the semantics of mamba-ssm's ``selective_scan_fn``.

    Args:
        u, delta: (batch, E, L); ``delta`` before ``delta_bias`` and softplus.
        A: (E, N), negative.  B, C: (batch, N, L).
        D, delta_bias: (E,) or None.  z: (batch, E, L) gate or None.
        delta_softplus: apply softplus to ``delta + delta_bias``.
        backend: None (process default), 'auto', 'torch' or 'cuda'. On 'cuda', inference scans run
            mamba-ssm's compiled forward or our Triton one, as ``set_scan_kernel`` chose.
        return_ungated: also return y before the z gate (``<h_t, C_t> + D u_t``), which the
            'y_clip' token score (the ToR-SSM / ToP-ViM papers' importance) reads; costs nothing
            extra on either backend.

    Returns:
        y: (batch, E, L) in ``u.dtype``; accumulation is fp32 (or wider) on both backends.
        With ``return_ungated``: (y, y before the gate); both are y when ``z`` is None.
    """
    if resolve_backend(backend, u) == 'cuda':
        # The kernel wants fp32 weights; .float() is a no-op for Vim's fp32 parameters.
        D = None if D is None else D.float()
        delta_bias = None if delta_bias is None else delta_bias.float()
        inference = not needs_grad(u, delta, A, B, C, D, z, delta_bias)
        triton_forward = inference_scan_kernel(u) if inference else None
        if triton_forward is not None:
            gated, ungated = triton_forward(u, delta, A, B, C, D, z, delta_bias, delta_softplus,
                                            return_ungated=return_ungated)
            return _outputs(gated, gated if ungated is None else ungated, return_ungated)
        forward = selective_scan_forward_kernel()
        if forward is not None and inference:
            # Inference: the compiled forward on the inputs as they are (any batch/channel strides,
            # unit stride along L); B, C as (batch, groups=1, N, L) views.
            # The kernel's contract: ``out`` is y before the gate, ``out_z`` (only with z) after it.
            out, _, *gated = forward(u, delta, A.float(), B.unsqueeze(1), C.unsqueeze(1), D, z, delta_bias,
                                     delta_softplus)
            return _outputs(gated[0] if z is not None else out, out, return_ungated)
        # delta_softplus always goes by keyword: mamba-ssm's default is False, ours is True.
        if not return_ungated:
            return selective_scan_kernel()(u, delta, A.float(), B, C, D=D, z=z, delta_bias=delta_bias,
                                           delta_softplus=delta_softplus)
        # The autograd wrapper returns only the gated y: scan ungated, then gate here.
        ungated = selective_scan_kernel()(u, delta, A.float(), B, C, D=D, z=None, delta_bias=delta_bias,
                                          delta_softplus=delta_softplus)
        return _outputs(ungated if z is None else ungated * F.silu(z), ungated, True)
    return selective_scan_torch(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_ungated=return_ungated)


def _outputs(gated, ungated, return_ungated: bool):
    return (gated, ungated) if return_ungated else gated


def selective_scan_torch(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=True,
                         chunk_size=DEFAULT_CHUNK_SIZE, step_numel=None, return_ungated=False):
    """Chunked PyTorch selective scan; any device, differentiable. Arguments as ``selective_scan``,
    plus the chunk length T and the size of one step's state (default: ``STEP_NUMEL`` for the
    device of ``u``), which sets how many chunks are scanned side by side."""
    out_dtype = u.dtype
    dtype = torch.promote_types(u.dtype, torch.float32)
    u, delta, A, B, C = (t.to(dtype) for t in (u, delta, A, B, C))
    if delta_bias is not None:
        delta = delta + delta_bias.to(dtype)[:, None]
    if delta_softplus:
        delta = F.softplus(delta)

    if step_numel is None:
        step_numel = STEP_NUMEL.get(u.device.type, STEP_NUMEL['cpu'])
    y = _scan(u, delta, A, B, C, chunk_size, step_numel)
    if D is not None:
        y = torch.addcmul(y, u, D.to(dtype)[:, None])
    gated = y if z is None else y * F.silu(z.to(dtype))
    return _outputs(gated.to(out_dtype), y.to(out_dtype), return_ungated)


def _scan(u, delta, A, B, C, chunk_size, step_numel):
    """y_t = <h_t, C_t> for h_t = exp(Δ_t A) h_{t-1} + Δ_t B_t u_t, h_0 = 0."""
    batch, dim, length = u.shape
    state = A.shape[1]
    T = min(chunk_size, length)
    # Padding steps have Δ = 0: decay 1 and input 0, so they leave the state untouched.
    padded = math.ceil(length / T) * T
    steps = [_step_major(F.pad(t, (0, padded - length)), T) for t in (delta, delta * u, B, C)]
    chunks_per_block = max(1, step_numel // (batch * dim * state))

    h = u.new_zeros(batch, dim, state)
    ys = []
    for start in range(0, padded // T, chunks_per_block):
        part = slice(start, start + chunks_per_block)
        y, h = _scan_block(*(t[:, :, part] for t in steps), A, h)
        ys.append(y)
    y = torch.cat(ys, 2)                                   # (T, batch, chunks, E)
    return y.permute(1, 3, 2, 0).reshape(batch, dim, padded)[..., :length]


def _scan_block(delta, du, B, C, A, h):
    """Scan one block of chunks from entry state ``h`` (batch, E, N).

    Inputs are step-major, (T, batch, chunks, X) with X = E for ``delta``/``du``, N for B/C.
    Returns y (T, batch, chunks, E) and the state after the block.
    """
    T, batch, chunks = delta.shape[:3]
    entry = [h]
    if chunks > 1:
        # 1. End state of every chunk but the last, entered at zero (the last one's is not needed).
        ends = h.new_zeros(batch, chunks - 1, *h.shape[1:])
        for t in range(T):
            ends = _step(ends, delta[t, :, :-1], du[t, :, :-1], B[t, :, :-1], A)
        # 2. True entry states: decay the previous entry over the whole chunk, add its end state.
        decays = torch.exp(delta[:, :, :-1].sum(0)[..., None] * A)
        for c in range(chunks - 1):
            entry.append(torch.addcmul(ends[:, c], decays[:, c], entry[-1]))

    # 3. Rescan all chunks from their true entry states.
    h = torch.stack(entry, 1)                              # (batch, chunks, E, N)
    ys = []
    for t in range(T):
        h = _step(h, delta[t], du[t], B[t], A)
        ys.append((h @ C[t][..., None])[..., 0])          # <h, C_t>: (batch, chunks, E)
    return torch.stack(ys), h[:, -1]


def _step(h, delta, du, B, A):
    """h <- exp(Δ A) ⊙ h + Δu B for one token of every chunk; h (batch, chunks, E, N),
    delta and du (batch, chunks, E), B (batch, chunks, N)."""
    decay = (delta[..., None] * A).exp_()  # in place is autograd-safe: mul saves its inputs only
    return torch.addcmul(decay * h, du[..., None], B[..., None, :])


def _step_major(t, T):
    """(batch, X, chunks*T) -> (T, batch, chunks, X), contiguous: one step of all chunks per slice."""
    batch, channels, length = t.shape
    return t.view(batch, channels, length // T, T).permute(3, 0, 2, 1).contiguous()
