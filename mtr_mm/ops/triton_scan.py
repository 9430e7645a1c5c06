"""Selective-scan forward (inference only) in Triton, with a cost that follows the sequence length.

mamba-ssm's compiled forward picks its tile by length bucket, so on Vim's sequences it costs the same
for any L in 129–256 and for any L <= 128: shortening the sequence (token reduction) barely speeds it
up. Here each program owns one image and a block of channels, keeps their (N, BLOCK_E) fp32 state in
registers and steps through the L tokens one at a time, so the work is exactly batch x E x L x N.

Each thread owns whole channels (the state tile is laid out (N, BLOCK_E), channels along the lanes),
so <h_t, C_t> is summed in registers without shuffles, and a step's loads do not depend on the
state: the tokens are taken ``unroll`` at a time so their loads are issued ahead of the recurrence.
Along channels the loads are strided (the model's operands are views of channel-major buffers);
consecutive steps read consecutive addresses of the same lines, which the L1 cache serves.

Beside it, ``channel_mean_triton``: the per-token score a reducer reads from the scan's inputs (a mean
over the inner channels) in one pass.

Importing this module needs ``triton``; ``mtr_mm.ops.backend`` imports it lazily. Under
``TRITON_INTERPRET=1`` the kernels also run on CPU tensors (the tests use that).
"""
import contextlib
from typing import Optional

import torch
import triton
import triton.language as tl

from .backend import fills_gpu

# (BLOCK_E, num_warps) from the largest block down: BLOCK_E = 32 x num_warps puts one channel per thread.
BLOCK_CONFIGS = ((128, 4), (64, 2), (32, 1))
# Tokens whose loads are issued together (registers: 72 for 1, 128 for 2, 168 for 4 on sm_90), by input
# bytes. H200, batch 128, E 1,536, 197 tokens: bf16 1.18 / 1.24 ms with 2 / 4; fp32 1.77 / 1.34 ms.
DEFAULT_UNROLL = {2: 2, 4: 4}


@triton.jit
def _softplus(x):
    # log1p(exp(-|x|)) by Kahan's trick, accurate where exp(-|x|) is tiny (libdevice's log1p is
    # not available to the interpreter): w = 1 + e rounds, log(w) * e / (w - 1) corrects for it.
    e = tl.exp(-tl.abs(x))
    w = 1.0 + e
    log1p_e = tl.where(w == 1.0, e, tl.log(w) * (e / (w - 1.0)))
    return tl.maximum(x, 0.0) + log1p_e


@triton.jit
def _selective_scan_fwd_kernel(
        u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, delta_bias_ptr, out_ptr, ungated_ptr,
        dim, length,
        stride_u_b, stride_u_e, stride_delta_b, stride_delta_e, stride_A_e, stride_A_n,
        stride_B_b, stride_B_n, stride_C_b, stride_C_n, stride_z_b, stride_z_e,
        stride_out_b, stride_out_e, stride_ungated_b, stride_ungated_e,
        STATE: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_E: tl.constexpr, UNROLL: tl.constexpr,
        HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_DELTA_BIAS: tl.constexpr, DELTA_SOFTPLUS: tl.constexpr,
        WRITE_UNGATED: tl.constexpr):
    """Grid (cdiv(dim, BLOCK_E), batch). All tensors have unit stride along L. ``out`` gets the gated
    y (y itself without z); ``ungated`` (only with WRITE_UNGATED) y before the gate."""
    LOG2E: tl.constexpr = 1.4426950408889634
    image = tl.program_id(1).to(tl.int64)  # offsets in int64: batch x E x L can pass 2^31 elements
    channels = tl.program_id(0).to(tl.int64) * BLOCK_E + tl.arange(0, BLOCK_E)
    states = tl.arange(0, BLOCK_N)
    channel_ok = channels < dim
    # A is assembled from one channel-vector load per state, not loaded as a 2D tile: Triton would lay
    # the state tile out after that load's memory order (states across lanes), and <h_t, C_t> would
    # then cost shuffles and layout conversions every step. Padded states keep A = 0 (with B = C = 0:
    # decay 1, no input, no output).
    A_log2 = tl.zeros((BLOCK_N, BLOCK_E), dtype=tl.float32)
    for n in tl.static_range(STATE):
        A_n = tl.load(A_ptr + channels * stride_A_e + n * stride_A_n, mask=channel_ok, other=0.0).to(tl.float32)
        A_log2 = tl.where(states[:, None] == n, A_n[None, :] * LOG2E, A_log2)
    if HAS_D:
        D = tl.load(D_ptr + channels, mask=channel_ok, other=0.0).to(tl.float32)
    if HAS_DELTA_BIAS:
        delta_bias = tl.load(delta_bias_ptr + channels, mask=channel_ok, other=0.0).to(tl.float32)

    u_ptrs = u_ptr + image * stride_u_b + channels * stride_u_e
    delta_ptrs = delta_ptr + image * stride_delta_b + channels * stride_delta_e
    z_ptrs = z_ptr + image * stride_z_b + channels * stride_z_e
    out_ptrs = out_ptr + image * stride_out_b + channels * stride_out_e
    ungated_ptrs = ungated_ptr + image * stride_ungated_b + channels * stride_ungated_e
    # B_t and C_t are needed whole by every thread: one base pointer and int32 offsets per state
    # rather than N 64-bit pointers (fewer registers, more programs per SM).
    B_row, B_offsets = B_ptr + image * stride_B_b, states * stride_B_n
    C_row, C_offsets = C_ptr + image * stride_C_b, states * stride_C_n

    h = tl.zeros((BLOCK_N, BLOCK_E), dtype=tl.float32)
    for start in range(0, length, UNROLL):
        for i in tl.static_range(UNROLL):
            t = start + i
            in_seq = t < length
            # Past the end no channel or state is valid (one comparison each; the interpreter also
            # mishandles a scalar & a block mask).
            mask = channels < tl.where(in_seq, dim, 0)
            state_mask = states < tl.where(in_seq, STATE, 0)
            u = tl.load(u_ptrs + t, mask=mask, other=0.0).to(tl.float32)
            dt = tl.load(delta_ptrs + t, mask=mask, other=0.0).to(tl.float32)
            B = tl.load(B_row + (B_offsets + t), mask=state_mask, other=0.0).to(tl.float32)
            C = tl.load(C_row + (C_offsets + t), mask=state_mask, other=0.0).to(tl.float32)
            if HAS_DELTA_BIAS:
                dt += delta_bias
            if DELTA_SOFTPLUS:
                dt = _softplus(dt)
            dt = tl.where(in_seq, dt, 0.0)  # steps past the end: decay 1, no input
            h = tl.exp2(dt[None, :] * A_log2) * h + B[:, None] * (dt * u)[None, :]
            y = tl.sum(h * C[:, None], axis=0)
            if HAS_D:
                y += D * u
            if HAS_Z:
                z = tl.load(z_ptrs + t, mask=mask, other=0.0).to(tl.float32)
                if WRITE_UNGATED:
                    tl.store(ungated_ptrs + t, y.to(ungated_ptr.dtype.element_ty), mask=mask)
                y = y * z * tl.sigmoid(z)
            tl.store(out_ptrs + t, y.to(out_ptr.dtype.element_ty), mask=mask)


def block_config(batch: int, dim: int, device: torch.device):
    """(BLOCK_E, num_warps): the largest channel block that still gives every SM two programs (a
    small batch needs small blocks to fill the GPU), else the smallest."""
    for block_e, num_warps in BLOCK_CONFIGS:
        if fills_gpu(batch, dim, block_e, device):
            return block_e, num_warps
    return BLOCK_CONFIGS[-1]


def selective_scan_triton(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
                          D: Optional[torch.Tensor], z: Optional[torch.Tensor], delta_bias: Optional[torch.Tensor],
                          delta_softplus: bool, return_ungated: bool = False, block_e: Optional[int] = None,
                          num_warps: Optional[int] = None, unroll: Optional[int] = None):
    """Forward of ``mtr_mm.ops.selective_scan`` (same arguments: u, delta, z (batch, E, L), A (E, N),
    B, C (batch, N, L), D, delta_bias (E,); any batch/channel/state strides, unit stride along L).
    Returns (y, y before the gate), the second None unless ``return_ungated`` and z is given; both
    in u.dtype, laid out like ``delta`` (as mamba-ssm's forward does). ``block_e`` (with
    ``num_warps``, default one channel per thread) overrides ``block_config``'s choice, and ``unroll``
    the tokens per loop step (default: ``DEFAULT_UNROLL`` by input bytes; both for benchmarks)."""
    batch, dim, length = u.shape
    state = A.shape[1]
    for name, t in dict(u=u, delta=delta, B=B, C=C, z=z).items():
        if t is not None and t.stride(-1) != 1:
            raise ValueError(f'selective_scan_triton: {name} needs unit stride along L, got strides {t.stride()}')
    # The kernel reads D and delta_bias at unit stride (one load per channel block): a no-op for Vim's parameters.
    D = None if D is None else D.contiguous()
    delta_bias = None if delta_bias is None else delta_bias.contiguous()
    out = torch.empty_like(delta, dtype=u.dtype)
    ungated = torch.empty_like(out) if return_ungated and z is not None else None
    unroll = unroll or DEFAULT_UNROLL.get(u.element_size(), 2)
    if block_e is None:
        block_e, num_warps = block_config(batch, dim, u.device)
    elif num_warps is None:
        num_warps = max(1, block_e // 32)
    # Absent operands: any tensor as the pointer, never read (the constexpr flags drop those loads).
    z_arg, ungated_arg = (z if z is not None else u), (ungated if ungated is not None else out)
    # Triton launches on the current device: make it the inputs' one.
    with torch.cuda.device(u.device) if u.is_cuda else contextlib.nullcontext():
        _selective_scan_fwd_kernel[(triton.cdiv(dim, block_e), batch)](
            u, delta, A, B, C, D if D is not None else A, z_arg, delta_bias if delta_bias is not None else A,
            out, ungated_arg, dim, length,
            u.stride(0), u.stride(1), delta.stride(0), delta.stride(1), A.stride(0), A.stride(1),
            B.stride(0), B.stride(1), C.stride(0), C.stride(1), z_arg.stride(0), z_arg.stride(1),
            out.stride(0), out.stride(1), ungated_arg.stride(0), ungated_arg.stride(1),
            STATE=state, BLOCK_N=triton.next_power_of_2(state), BLOCK_E=block_e, UNROLL=unroll,
            HAS_D=D is not None, HAS_Z=z is not None, HAS_DELTA_BIAS=delta_bias is not None,
            DELTA_SOFTPLUS=delta_softplus, WRITE_UNGATED=ungated is not None, num_warps=num_warps)
    return out, ungated


# The per-token score a reducer asks the mixer for is a mean over the E inner channels of a (E, B, L)
# tensor the scan reads anyway (Δ, or y before the gate). In PyTorch that is an fp32 copy, an
# activation and a mean: three full passes over E x B x L. Here it is one read.
CHANNEL_MEAN_ACTIVATIONS = {'none': 0, 'softplus': 1, 'relu': 2}


@triton.jit
def _channel_mean_kernel(x_ptr, bias_ptr, out_ptr, dim, length, stride_x_e, stride_x_b, stride_out_b,
                         ACTIVATION: tl.constexpr, HAS_BIAS: tl.constexpr, BLOCK_E: tl.constexpr,
                         BLOCK_L: tl.constexpr):
    """Grid (cdiv(length, BLOCK_L), batch). x (E, B, L) with unit stride along L; out (B, L) fp32.
    Each program sums a (BLOCK_E, BLOCK_L) tile per step over the channels and reduces it once."""
    image = tl.program_id(1).to(tl.int64)
    tokens = tl.program_id(0) * BLOCK_L + tl.arange(0, BLOCK_L)
    token_ok = tokens < length
    total = tl.zeros((BLOCK_E, BLOCK_L), dtype=tl.float32)
    for start in range(0, dim, BLOCK_E):
        channels = start + tl.arange(0, BLOCK_E)
        channel_ok = channels < dim
        mask = channel_ok[:, None] & token_ok[None, :]
        x = tl.load(x_ptr + image * stride_x_b + channels[:, None].to(tl.int64) * stride_x_e + tokens[None, :],
                    mask=mask, other=0.0).to(tl.float32)
        if HAS_BIAS:
            x += tl.load(bias_ptr + channels, mask=channel_ok, other=0.0).to(tl.float32)[:, None]
        if ACTIVATION == 1:
            x = _softplus(x)
        elif ACTIVATION == 2:
            x = tl.maximum(x, 0.0)
        total += tl.where(mask, x, 0.0)
    tl.store(out_ptr + image * stride_out_b + tokens, tl.sum(total, axis=0) / dim, mask=token_ok)


def channel_mean_triton(x: torch.Tensor, bias: Optional[torch.Tensor] = None, activation: str = 'none',
                        block_e: int = 32, block_l: int = 64) -> torch.Tensor:
    """``mtr_mm.ops.channel_mean`` in one pass: x (E, B, L) with unit stride along L, bias (E,) or
    None -> (B, L) fp32, the mean over E of activation(x + bias)."""
    dim, batch, length = x.shape
    if x.stride(-1) != 1:
        raise ValueError(f'channel_mean_triton: x needs unit stride along L, got strides {x.stride()}')
    out = torch.empty(batch, length, dtype=torch.float32, device=x.device)
    bias_arg = bias.contiguous() if bias is not None else x
    with torch.cuda.device(x.device) if x.is_cuda else contextlib.nullcontext():
        _channel_mean_kernel[(triton.cdiv(length, block_l), batch)](
            x, bias_arg, out, dim, length, x.stride(0), x.stride(1), out.stride(0),
            ACTIVATION=CHANNEL_MEAN_ACTIVATIONS[activation], HAS_BIAS=bias is not None,
            BLOCK_E=block_e, BLOCK_L=block_l, num_warps=4)
    return out
