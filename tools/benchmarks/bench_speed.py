"""Throughput of Vim with and without token reduction, and CUDA-vs-PyTorch ops agreement.

    # on a GPU machine with mamba-ssm's kernels (see docs/benchmarks.md for the full command)
    python tools/benchmarks/bench_speed.py --device cuda --batch 128 --out-dir OUT
    # CPU path, Vim-T at batch 8
    python tools/benchmarks/bench_speed.py --device cpu --archs tiny --batch 8 --dtypes fp32 --runs none,mtr@0.4
    # rebuild the markdown + plot from a results file
    python tools/benchmarks/bench_speed.py --report-only OUT/speed.json --out-dir docs/benchmarks

Timing: warm-up, then every configuration measured in turn (interleaved) for several rounds, on
inputs rotated between calls; CUDA events on GPU; medians reported. The reduction's own overhead
is the time of its plan + apply steps, replayed in isolation on the states the forward produced,
as a share of the reduced forward. Random weights: speed does not depend on them.
"""
import argparse
import json
import os
import os.path as osp
import statistics
import sys
import time

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

import torch  # noqa: E402

from mtr_mm.models import VisionMamba, vim_arch  # noqa: E402
from mtr_mm.ops import cuda_kernels_available, set_ops_backend  # noqa: E402
from mtr_mm.reduction import apply_plan  # noqa: E402
from tools.report_utils import pyplot, rebuild_report, save_figure, shipped_layers  # noqa: E402

DTYPES = {'fp32': None, 'bf16': torch.bfloat16}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--archs', nargs='+', default=['tiny', 'small', 'base'])
    parser.add_argument('--batch', type=int, default=128)
    parser.add_argument('--dtypes', nargs='+', default=['fp32', 'bf16'], choices=list(DTYPES))
    parser.add_argument('--runs', default='none,mtr@0.2,mtr@0.3,mtr@0.4,random@0.4,evit@0.4,tome@0.4,'
                        'pumer@0.4,utr@0.4,hsa@0.4', help='comma list of METHOD@FLOPS_REDUCTION or none')
    parser.add_argument('--layers', nargs='+', type=int, default=shipped_layers(),
                        help='reducing layers, the same for every method (default: the shipped MTR configs)')
    parser.add_argument('--rounds', type=int, default=5, help='interleaved timing rounds')
    parser.add_argument('--iters', type=int, default=10, help='forwards per timing')
    parser.add_argument('--ops', nargs='+', default=['auto'], choices=['auto', 'torch', 'cuda'],
                        help='ops backends to time (auto: CUDA kernels when importable)')
    parser.add_argument('--torch-ops-runs', default='none,mtr@0.4', help='runs also timed with --ops torch')
    parser.add_argument('--check-backends', action='store_true', help='CUDA kernels vs PyTorch ops, same weights')
    parser.add_argument('--out-dir', default='work_dirs/bench_speed')
    parser.add_argument('--report-only', help='rebuild the report from this results json')
    return parser.parse_args(argv)


def build(arch, run, device, layers=()):
    reduction = None
    if run != 'none':
        method, target = run.split('@')
        reduction = dict(method=method, schedule=dict(layers=list(layers), flops_reduction=float(target)))
    torch.manual_seed(0)
    model = VisionMamba(reduction=reduction, **vim_arch(arch))
    return model.to(device).eval()


def timer(device):
    if device.startswith('cuda'):
        def run(fn):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            return start.elapsed_time(end) / 1e3
    else:
        def run(fn):
            begin = time.perf_counter()
            fn()
            return time.perf_counter() - begin
    return run


def reduction_overhead(model, images, measure, iters):
    """Seconds per forward spent in the reduction steps, replayed on the states they received."""
    if model.reduction is None:
        return 0.
    steps = []
    removed = model.removed_per_layer(model.patch_embed.grid_size(*images.shape[-2:]))
    original = model.reduction.reduce

    def capture(state, r, score):
        steps.append((state, r, score))
        return original(state, r, score)

    model.reduction.reduce = capture
    with torch.no_grad():
        model(images)
    model.reduction.reduce = original
    reducer = model.reduction.reducer

    def replay():
        for _ in range(iters):
            for state, r, score in steps:
                apply_plan(state, reducer.plan(state, r, score))

    assert len(steps) == sum(1 for r in removed if r)
    return measure(replay) / iters


def bench_arch(arch, runs, dtype_name, args, inputs, ops):
    measure = timer(args.device)
    models = {run: build(arch, run, args.device, args.layers) for run in runs}
    dtype = DTYPES[dtype_name]
    times = {run: [] for run in runs}

    def forward(model, k):
        def fn():
            with torch.no_grad(), torch.autocast(args.device.split(':')[0], dtype=dtype, enabled=dtype is not None):
                for i in range(args.iters):
                    model(inputs[(k + i) % len(inputs)])
        return fn

    for run, model in models.items():  # warm-up (kernels, autotuning, allocator)
        forward(model, 0)()
    peak = {}
    for round_index in range(args.rounds):
        for run, model in models.items():
            if args.device.startswith('cuda'):
                torch.cuda.reset_peak_memory_stats()
            times[run].append(measure(forward(model, round_index)) / args.iters)
            if args.device.startswith('cuda'):
                peak[run] = torch.cuda.max_memory_allocated() / 2**30
    rows = []
    base = statistics.median(times['none']) if 'none' in times else None
    for run, model in models.items():
        median = statistics.median(times[run])
        with torch.autocast(args.device.split(':')[0], dtype=dtype, enabled=dtype is not None):
            overhead = reduction_overhead(model, inputs[0], measure, 3)
        grid = model.patch_embed.grid_size(*inputs[0].shape[-2:])
        flops = model.flops(grid).total
        rows.append(dict(arch=arch, dtype=dtype_name, ops=ops, run=run, batch=args.batch, seconds=median,
                         images_per_s=args.batch / median, speedup=(base / median) if base else None,
                         overhead_share=overhead / median, peak_gib=peak.get(run), gflops=flops / 1e9))
    return rows


def check_backends(args):
    """Max relative difference to the CPU path (PyTorch ops on the CPU, fp32), same weights and
    inputs: the CUDA kernels in fp32 and under bf16 autocast, and the PyTorch ops on the GPU."""
    rows = []
    for arch in args.archs:
        model = build(arch, 'none', 'cpu')
        images = torch.randn(8, 3, 224, 224, generator=torch.Generator().manual_seed(0))
        set_ops_backend('torch')
        with torch.no_grad():
            reference = model(images).double()
        model.to(args.device)
        for ops, dtype_name in (('cuda', 'fp32'), ('cuda', 'bf16'), ('torch', 'fp32')):
            set_ops_backend(ops)
            with torch.no_grad(), torch.autocast('cuda', dtype=DTYPES[dtype_name], enabled=dtype_name != 'fp32'):
                out = model(images.to(args.device)).double().cpu()
            rel = ((out - reference).abs().max() / reference.abs().max()).item()
            rows.append(dict(arch=arch, ops=f'{ops} on {args.device}', dtype=dtype_name, max_rel_diff=rel))
            print(f'{arch} {ops} {dtype_name} vs CPU path fp32: max rel diff {rel:.2e}', flush=True)
        set_ops_backend('auto')
    return rows


def write_report(results, out_dir):
    os.makedirs(out_dir, exist_ok=True)
    lines = [f'# Speed: {results["device"]}', '', f'torch {results["torch"]}, CUDA kernels: '
             f'{results["cuda_kernels"]}, batch {results["batch"]}, medians of {results["rounds"]} interleaved rounds.', '']
    if results.get('backends'):
        lines += ['## GPU paths vs the CPU path (PyTorch ops on CPU, fp32; same weights, batch 8)', '',
                  '| arch | ops | dtype | max rel diff of logits |', '|---|---|---|---|']
        lines += [f'| {r["arch"]} | {r["ops"]} | {r["dtype"]} | {r["max_rel_diff"]:.2e} |' for r in results['backends']]
        lines.append('')
    lines += ['## Throughput', '', '| arch | dtype | ops | run | GFLOPs | images/s | speed-up | reduction overhead | peak GiB |',
              '|---|---|---|---|---|---|---|---|---|']
    for r in results['rows']:
        lines.append(f'| {r["arch"]} | {r["dtype"]} | {r.get("ops", "auto")} | {r["run"]} | '
                     f'{r["gflops"] or float("nan"):.2f} | {r["images_per_s"]:.1f} | '
                     f'{r["speedup"] or 1:.2f}x | {r["overhead_share"]:.1%} | '
                     f'{r["peak_gib"] if r["peak_gib"] is not None else float("nan"):.2f} |')
    with open(osp.join(out_dir, 'speed.md'), 'w') as f:
        f.write('\n'.join(lines) + '\n')
    plt = pyplot()
    if plt is None:
        return
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([0, 0.5], [1, 2], 'k--', label='ideal (1 / (1 - reduction))')
    for arch in sorted({r['arch'] for r in results['rows']}):
        for dtype in sorted({r['dtype'] for r in results['rows']}):
            pts = sorted((float(r['run'].split('@')[1]), r['speedup']) for r in results['rows']
                         if r['arch'] == arch and r['dtype'] == dtype and r['run'].startswith('mtr@'))
            if pts:
                ax.plot([0] + [p[0] for p in pts], [1] + [p[1] for p in pts], 'o-', label=f'MTR Vim-{arch[0].upper()} {dtype}')
    xs = [i / 100 for i in range(0, 51)]
    ax.lines[0].set_data(xs, [1 / (1 - x) for x in xs])
    ax.set_xlabel('FLOPs reduction')
    ax.set_ylabel('throughput speed-up')
    ax.legend(fontsize=7)
    ax.grid(alpha=.3)
    save_figure(fig, osp.join(out_dir, 'speedup_vs_flops.png'))


def main(argv=None):
    args = parse_args(argv)
    if rebuild_report(args, write_report):
        return
    runs = args.runs.split(',')
    results = dict(device=torch.cuda.get_device_name() if args.device.startswith('cuda') else 'cpu',
                   torch=torch.__version__, cuda_kernels=cuda_kernels_available(), batch=args.batch,
                   rounds=args.rounds, layers=args.layers, rows=[])
    if args.check_backends:
        results['backends'] = check_backends(args)
    generator = torch.Generator(args.device).manual_seed(0)
    inputs = [torch.randn(args.batch, 3, 224, 224, device=args.device, generator=generator) for _ in range(3)]
    os.makedirs(args.out_dir, exist_ok=True)
    for arch in args.archs:
        for dtype_name in args.dtypes:
            for ops in args.ops:
                set_ops_backend(ops)
                ops_runs = runs if ops != 'torch' or len(args.ops) == 1 else args.torch_ops_runs.split(',')
                rows = bench_arch(arch, ops_runs, dtype_name, args, inputs, ops)
                for r in rows:
                    print(f'{arch:5} {dtype_name} {ops:5} {r["run"]:11} {r["images_per_s"]:9.1f} img/s  '
                          f'x{r["speedup"] or 1:.2f}  overhead {r["overhead_share"]:.1%}', flush=True)
                results['rows'] += rows
            set_ops_backend('auto')
            with open(osp.join(args.out_dir, 'speed.json'), 'w') as f:  # partial results survive a time-out
                json.dump(results, f, indent=1)
    write_report(results, args.out_dir)


if __name__ == '__main__':
    main()
