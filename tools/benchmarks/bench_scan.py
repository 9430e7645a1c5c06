"""Time the selective scan: plain per-step loop vs mtr_mm's chunked scan (and the GPU kernels on GPU).

    python tools/benchmarks/bench_scan.py                     # Vim-T shapes on CPU
    python tools/benchmarks/bench_scan.py --dim 1536 --length 1025 --repeats 5
    python tools/benchmarks/bench_scan.py --device cuda       # adds mamba-ssm's and our Triton kernel if importable
    python tools/benchmarks/bench_scan.py --device cuda --batch 128 1 --dim 1536 --length 27 95 129 197 --dtype bf16 \
        --layout model --triton-configs 128x4x1 128x4x4 64x2x2 32x1x2

On CUDA, mamba-ssm's compiled forward (``selective_scan``'s inference path) and our Triton forward
(mtr_mm/ops/triton_scan.py, called directly: it needs no mamba-ssm) are timed, the Triton one with its
default block choice and with each ``--triton-configs`` BLOCK_ExWARPSxUNROLL. ``--layout model`` passes the operands as
the views the Vim mixer passes (channel-major buffers) instead of contiguous (batch, E, L) tensors.

Implementations run interleaved (one call of each per round, order rotating) after a warm-up, so
drifting machine load hits all of them alike; medians are reported. Writes <out-dir>/<name>.md
and <name>.json.
"""
import argparse
import json
import math
import os
import os.path as osp
import platform
import statistics
import sys
import time
from datetime import datetime, timezone

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from mtr_mm.ops import cuda_kernels_available  # noqa: E402
from mtr_mm.ops.backend import triton_scan_kernel  # noqa: E402
from mtr_mm.ops.selective_scan import (DEFAULT_CHUNK_SIZE, selective_scan,  # noqa: E402
                                       selective_scan_torch)


def loop_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=True,
              precompute=True):
    """The plain per-step loop, token by token. With ``precompute`` (the usual reference form)
    exp(ΔA) and ΔBu are first built for all steps, as (batch, E, L, N) tensors; without, each step
    builds its own (batch, E, N) slice."""
    out_dtype = u.dtype
    u, delta, A, B, C = (t.float() for t in (u, delta, A, B, C))
    if delta_bias is not None:
        delta = delta + delta_bias.float()[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    if precompute:
        decays = torch.exp(delta[..., None] * A[:, None]).unbind(2)                 # (b, E, N) each
        inputs = ((delta * u)[..., None] * B.transpose(1, 2)[:, None]).unbind(2)
    else:
        decays = (torch.exp(d[..., None] * A) for d in delta.unbind(2))
        inputs = (du[..., None] * b[:, None] for du, b in zip((delta * u).unbind(2), B.unbind(2)))
    h = u.new_zeros(u.shape[0], u.shape[1], A.shape[1])
    ys = []
    for decay, x, c in zip(decays, inputs, C.unbind(2)):
        h = decay * h + x
        ys.append(torch.einsum('ben,bn->be', h, c))
    y = torch.stack(ys, -1)
    if D is not None:
        y = y + D.float()[:, None] * u
    if z is not None:
        y = y * F.silu(z.float())
    return y.to(out_dtype)


def make_inputs(batch, dim, state, length, device, dtype=torch.float32, seed=0, layout='contiguous'):
    """Inputs shaped and initialised like a Vim mixer's (S4D-real A, Mamba's dt init). With layout
    'model', u, delta, z, B and C are (batch, X, L) views of (X, batch, L) buffers, as in
    BiMambaMixer.scan."""
    g = torch.Generator().manual_seed(seed)
    dt = torch.exp(torch.rand(dim, generator=g) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3))
    inputs = dict(
        u=torch.randn(batch, dim, length, generator=g),
        delta=torch.randn(batch, dim, length, generator=g) * 0.5,
        A=-torch.arange(1, state + 1, dtype=torch.float32).repeat(dim, 1),
        B=torch.randn(batch, state, length, generator=g),
        C=torch.randn(batch, state, length, generator=g),
        D=torch.ones(dim),
        z=torch.randn(batch, dim, length, generator=g),
        delta_bias=dt + torch.log(-torch.expm1(-dt)),  # inverse softplus: Δ starts near dt
    )
    weights = ('A', 'D', 'delta_bias')  # fp32 parameters in Vim, also under autocast
    inputs = {k: v.to(device) if k in weights else v.to(device, dtype) for k, v in inputs.items()}
    if layout == 'model':
        inputs = {k: v if k in weights else v.transpose(0, 1).contiguous().transpose(0, 1) for k, v in inputs.items()}
    return inputs


def implementations(device, chunk_size, triton_configs=()):
    impls = {
        'loop, precomputed (reference)': loop_scan,
        'loop, per-step temporaries': lambda **x: loop_scan(**x, precompute=False),
        f'chunked torch (T={chunk_size})': lambda **x: selective_scan_torch(**x, chunk_size=chunk_size),
    }
    if device.type == 'cuda' and cuda_kernels_available():
        impls['mamba-ssm CUDA kernel'] = lambda **x: selective_scan(**x, backend='cuda')
    triton_scan = triton_scan_kernel() if device.type == 'cuda' else None
    if triton_scan is not None:
        impls['mtr_mm Triton scan'] = triton_impl(triton_scan)
        for config in triton_configs:
            block_e, num_warps, unroll = map(int, config.split('x'))
            impls[f'mtr_mm Triton scan {config}'] = triton_impl(triton_scan, block_e=block_e, num_warps=num_warps,
                                                                unroll=unroll)
    return impls


def triton_impl(triton_scan, **config):
    """Our Triton forward as an implementation here: the gated y only."""
    return lambda **x: triton_scan(**x, delta_softplus=True, **config)[0]


def time_call(fn, inputs, device):
    if device.type == 'cuda':
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    out = fn(**inputs)
    if device.type == 'cuda':
        torch.cuda.synchronize(device)
    return time.perf_counter() - start, out


def run(impls, inputs, device, warmup, repeats):
    """Median seconds per implementation and each output, interleaving calls round by round."""
    names = list(impls)
    times = {name: [] for name in names}
    outputs = {}
    with torch.no_grad():
        for _ in range(warmup):
            for name in names:
                outputs[name] = time_call(impls[name], inputs, device)[1]
        for r in range(repeats):
            for name in names[r % len(names):] + names[:r % len(names)]:
                times[name].append(time_call(impls[name], inputs, device)[0])
    return times, outputs


def max_rel_err(y, ref):
    return ((y.double() - ref.double()).abs().max() / ref.double().abs().max()).item()


def summarise(times, outputs):
    ref_name = next(iter(times))
    ref_median = statistics.median(times[ref_name])
    return [
        dict(name=name,
             median_ms=1e3 * statistics.median(ts),
             min_ms=1e3 * min(ts),
             speedup=ref_median / statistics.median(ts),
             max_rel_err=max_rel_err(outputs[name], outputs[ref_name]))
        for name, ts in times.items()
    ]


def markdown_table(rows):
    lines = ['| implementation | median ms | min ms | speed-up vs reference | max rel err vs reference |',
             '|---|---:|---:|---:|---:|']
    lines += [f"| {r['name']} | {r['median_ms']:.3g} | {r['min_ms']:.3g} | {r['speedup']:.2f}x "
              f"| {r['max_rel_err']:.1e} |" for r in rows]
    return '\n'.join(lines)


def environment(device):
    env = dict(torch=torch.__version__, python=platform.python_version(),
               threads=torch.get_num_threads(), device=str(device),
               cpu=platform.processor() or platform.machine(), cpu_count=os.cpu_count())
    if device.type == 'cuda':
        env['gpu'] = torch.cuda.get_device_name(device)
    return env


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--batch', type=int, nargs='+', default=[8], help='several: one table each (1: latency)')
    p.add_argument('--dim', type=int, default=384, help='inner channels E (Vim-T: 384)')
    p.add_argument('--state', type=int, default=16, help='state size N')
    p.add_argument('--length', type=int, nargs='+', default=[197], help='tokens L (Vim at 224px: 197); several: one table each')
    p.add_argument('--dtype', default='fp32', choices=['fp32', 'bf16'], help='activations (weights stay fp32)')
    p.add_argument('--layout', default='contiguous', choices=['contiguous', 'model'],
                   help="model: the Vim mixer's views of channel-major buffers")
    p.add_argument('--triton-configs', nargs='*', default=[], metavar='BLOCK_ExWARPSxUNROLL',
                   help='also time the Triton kernel with these settings, e.g. 128x4x2')
    p.add_argument('--chunk-size', type=int, default=DEFAULT_CHUNK_SIZE)
    p.add_argument('--warmup', type=int, default=2)
    p.add_argument('--repeats', type=int, default=15)
    p.add_argument('--device', default='cpu')
    p.add_argument('--threads', type=int, default=None, help='torch.set_num_threads (default: torch\'s)')
    p.add_argument('--out-dir', default='docs/benchmarks')
    return p.parse_args()


def main():
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    for batch in args.batch:
        for length in args.length:
            bench_shape(args, device, batch, length)


def bench_shape(args, device, batch, length):
    shape = dict(batch=batch, dim=args.dim, state=args.state, length=length)
    dtype = dict(fp32=torch.float32, bf16=torch.bfloat16)[args.dtype]
    inputs = make_inputs(**shape, device=device, dtype=dtype, layout=args.layout)
    times, outputs = run(implementations(device, args.chunk_size, args.triton_configs), inputs, device,
                         args.warmup, args.repeats)
    rows = summarise(times, outputs)

    title = ('selective scan, batch {batch}, E={dim}, N={state}, L={length}'.format(**shape)
             + f', {args.dtype}, {args.layout} layout, {device.type}, {args.repeats} repeats')
    table = markdown_table(rows)
    print(title + '\n' + table, flush=True)

    env = environment(device)
    stamp = datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')
    name = 'scan_b{batch}_e{dim}_n{state}_l{length}'.format(**shape) + f'_{args.dtype}_{device.type}'
    if args.layout != 'contiguous':
        name += f'_{args.layout}'
    triton_configs = ' --triton-configs ' + ' '.join(args.triton_configs) if args.triton_configs else ''
    os.makedirs(args.out_dir, exist_ok=True)
    with open(os.path.join(args.out_dir, name + '.md'), 'w') as f:
        f.write(f'# {title}\n\n{table}\n\n'
                f'Forward only, no grad; medians of interleaved runs after {args.warmup} warm-up '
                f'rounds. Errors are relative to the reference loop\'s max |y|.\n\n'
                f"Measured {stamp}: torch {env['torch']}, {env['threads']} threads, "
                f"{env.get('gpu', env['cpu'])}.\n\n"
                f'Command: `python tools/benchmarks/bench_scan.py --batch {batch} --dim {args.dim} '
                f'--state {args.state} --length {length} --dtype {args.dtype} --layout {args.layout} '
                f'--repeats {args.repeats} --device {args.device}{triton_configs}`\n')
    with open(os.path.join(args.out_dir, name + '.json'), 'w') as f:
        json.dump(dict(config=dict(vars(args), batch=batch, length=length), environment=env, measured=stamp,
                       results=rows, times_ms={k: [1e3 * t for t in v] for k, v in times.items()}), f, indent=2)
    print(f'wrote {os.path.join(args.out_dir, name)}.{{md,json}}')


if __name__ == '__main__':
    main()
