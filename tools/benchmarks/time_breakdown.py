"""Where a forward's time goes: every block timed alone at the token count it runs at, every reduction
step alone, the reduced model beside the unreduced one.

    # batch 1 on the GPU: does a block get cheaper with fewer tokens, and what does a reduction step cost?
    python tools/benchmarks/time_breakdown.py --archs tiny small base --batch 1 --out-dir OUT/breakdown_b1
    # batch 128, MTR and UTR at -40 %, with the kernels of each one's first reduction step
    python tools/benchmarks/time_breakdown.py --archs base --batch 128 --runs mtr@0.4,utr@0.4 --profile --out-dir OUT/bd
    # rebuild the report from its json
    python tools/benchmarks/time_breakdown.py --report-only OUT/bd/breakdown.json --out-dir OUT/bd

One forward of each model records what every block and every reduction step received; each is then
timed alone on those tensors. On CUDA a part is captured as a CUDA graph and replayed (GPU time, no
host launch cost: what a replayed forward pays for it); on CPU it is wall time. The whole forward is
timed the same way, so the table shows how much of it the parts explain (the rest: patch embedding,
final norm, head). Random weights (time does not depend on them).
"""
import argparse
import json
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

import torch  # noqa: E402

from mtr_mm.models import VIM_ARCH  # noqa: E402
from mtr_mm.ops import set_ops_backend, set_scan_kernel  # noqa: E402
from mtr_mm.ops.backend import SCAN_KERNELS  # noqa: E402
from mtr_mm.reduction import apply_plan  # noqa: E402
from tools.benchmarks.bench_speed import DTYPES, build, make_inputs  # noqa: E402
from tools.report_utils import pyplot, rebuild_report, save_figure, shipped_layers  # noqa: E402
from tools.timing import cuda_graph_seconds, wall_seconds  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--archs', nargs='+', default=['tiny'], choices=[a for a in VIM_ARCH
                                                                           if not a.startswith('videomamba_')])
    parser.add_argument('--batch', type=int, default=1)
    parser.add_argument('--dtypes', nargs='+', default=['fp32'], choices=list(DTYPES))
    parser.add_argument('--runs', default='mtr@0.4', help='comma list of METHOD@FLOPS_REDUCTION, each timed '
                        'beside the unreduced model')
    parser.add_argument('--layers', nargs='+', type=int, default=shipped_layers(), help='reducing layers')
    parser.add_argument('--iters', type=int, default=20, help='calls (graph replays on CUDA) per timing')
    parser.add_argument('--profile', action='store_true', help='also list the kernels of the first reduction '
                        'step by their time (torch.profiler: GPU time on CUDA, CPU time on CPU)')
    parser.add_argument('--ops', default='auto', choices=['auto', 'torch', 'cuda'])
    parser.add_argument('--scan-kernel', default='auto', choices=SCAN_KERNELS)
    parser.add_argument('--out-dir', default='work_dirs/time_breakdown')
    parser.add_argument('--report-only', help='rebuild the report from this results json')
    args = parser.parse_args(argv)
    args.dense = args.config = None  # what bench_speed.build reads
    for run in args.runs.split(','):
        if '@' not in run or run.endswith('+graph'):
            parser.error(f'--runs: {run!r} is not METHOD@FLOPS_REDUCTION (e.g. mtr@0.4); the unreduced model '
                         'is always timed, and every part is timed as a replayed graph on CUDA anyway')
    return args


def record_parts(vim, model, images):
    """One forward; returns the arguments every block received (by layer) and the reduction steps
    (layer, state, tokens removed, score)."""
    blocks, steps = {}, []
    for index, layer in enumerate(vim.layers):
        def recording(hidden, residual, score_request=None, index=index, forward=layer.forward):
            blocks[index] = (hidden, residual, score_request)
            return forward(hidden, residual, score_request)
        layer.forward = recording
    reduction = vim.reduction
    if reduction is not None:
        reduce = reduction.reduce
        reduction.reduce = lambda state, r, score: steps.append((len(blocks) - 1, state, r, score)) or reduce(
            state, r, score)
    try:
        model(images)
    finally:
        for layer in vim.layers:
            del layer.forward
        if reduction is not None:
            del reduction.reduce
    return blocks, steps


def seconds(fn, images, iters):
    if images.is_cuda:
        return cuda_graph_seconds(fn, iters)
    fn()
    return wall_seconds(lambda: [fn() for _ in range(iters)]) / iters


def op_table(fn, cuda: bool, calls: int = 3, top: int = 15) -> list:
    """The ops ``fn`` runs, by their own time per call (GPU kernels on CUDA, CPU ops otherwise)."""
    from torch.profiler import ProfilerActivity, profile
    fn()
    with profile(activities=[ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])) as prof:
        for _ in range(calls):
            fn()
        if cuda:
            torch.cuda.synchronize()
    rows = []
    for event in prof.key_averages():
        us = (event.self_device_time_total if cuda else event.self_cpu_time_total) / calls
        if us > 0:
            rows.append(dict(op=event.key[:100], calls=event.count / calls, us=us))
    return sorted(rows, key=lambda r: -r['us'])[:top]


def breakdown(arch, run, dtype_name, args, images):
    """Rows of one model: each block (layer, tokens, ms) and each reduction step after it, plus the
    whole forward."""
    model, vim = build(arch, run, args)
    dtype = DTYPES[dtype_name]
    with torch.inference_mode(), torch.autocast(args.device.split(':')[0], dtype=dtype or torch.float32,
                                                enabled=dtype is not None):
        blocks, steps = record_parts(vim, model, images)
        layers = []
        for index, layer in enumerate(vim.layers):
            hidden, residual, request = blocks[index]
            layers.append(dict(layer=index, tokens=hidden.shape[1],
                               ms=1e3 * seconds(lambda: layer(hidden, residual, request), images, args.iters)))
        reducer = vim.reduction.reducer if vim.reduction is not None else None
        for index, state, removed, score in steps:
            layers[index]['reduce_ms'] = 1e3 * seconds(lambda: apply_plan(state, reducer.plan(state, removed, score)),
                                                       images, args.iters)
            layers[index]['removed'] = removed
            if args.profile and index == steps[0][0]:
                layers[index]['ops'] = op_table(lambda: apply_plan(state, reducer.plan(state, removed, score)),
                                                images.is_cuda)
        whole = 1e3 * seconds(lambda: model(images), images, args.iters)
    return dict(arch=arch, dtype=dtype_name, run=run, batch=args.batch, forward_ms=whole, layers=layers,
                blocks_ms=sum(r['ms'] for r in layers), reduce_ms=sum(r.get('reduce_ms', 0.) for r in layers))


def write_report(results, out_dir):
    os.makedirs(out_dir, exist_ok=True)
    timing = 'CUDA-graph replays (GPU time)' if results['device'] != 'cpu' else 'wall time'
    lines = [f'# Time breakdown: {results["device"]}, batch {results["batch"]}, 224 x 224', '',
             f'torch {results["torch"]}, scan kernel {results["scan_kernel"]}, reducing layers {results["layers"]}; '
             f'each part timed alone ({timing}, mean of {results["iters"]} calls) on the tensors one forward gave '
             'it. "other" = whole forward minus blocks and reduction steps (patch embedding, final norm, head).', '',
             '| arch | dtype | run | forward ms | blocks ms | reduction steps ms | other ms '
             '| ms per block at each token count | ms per reduction step |', '|---' * 9 + '|']
    for r in results['rows']:
        by_tokens = {}
        for layer in r['layers']:
            by_tokens.setdefault(layer['tokens'], []).append(layer['ms'])
        per_block = ', '.join(f'{t}: {sum(v) / len(v):.3f} ({len(v)})' for t, v in sorted(by_tokens.items(), reverse=True))
        per_step = ', '.join(f'{layer["reduce_ms"]:.3f}' for layer in r['layers'] if 'reduce_ms' in layer) or '-'
        lines.append(f'| {r["arch"]} | {r["dtype"]} | {r["run"]} | {r["forward_ms"]:.3f} | {r["blocks_ms"]:.3f} | '
                     f'{r["reduce_ms"]:.3f} | {r["forward_ms"] - r["blocks_ms"] - r["reduce_ms"]:.3f} | '
                     f'{per_block} | {per_step} |')
    lines += ['', '"ms per block at each token count": tokens: mean ms (number of blocks at that count).']
    for r in results['rows']:
        for layer in r['layers']:
            if layer.get('ops'):
                lines += ['', f'## The first reduction step of {r["arch"]} {r["dtype"]} {r["run"]} (after layer '
                          f'{layer["layer"]}, {layer["tokens"]} tokens, {layer["removed"]} removed): its ops by own time',
                          '', '| op | calls per step | µs per step |', '|---|---|---|']
                lines += [f'| `{op["op"]}` | {op["calls"]:g} | {op["us"]:.1f} |' for op in layer['ops']]
    with open(osp.join(out_dir, 'breakdown.md'), 'w') as f:
        f.write('\n'.join(lines) + '\n')
    plt = pyplot()
    if plt is None:
        return
    groups = sorted({(r['arch'], r['dtype']) for r in results['rows']})
    fig, axes = plt.subplots(len(groups), 1, figsize=(7, 2.6 * len(groups)), squeeze=False)
    for ax, (arch, dtype) in zip(axes[:, 0], groups):
        rows = [r for r in results['rows'] if (r['arch'], r['dtype']) == (arch, dtype)]
        width = 0.8 / len(rows)
        for k, r in enumerate(rows):
            xs = [layer['layer'] + k * width for layer in r['layers']]
            ax.bar(xs, [layer['ms'] for layer in r['layers']], width, label=f'{r["run"]} block')
            ax.bar(xs, [layer.get('reduce_ms', 0.) for layer in r['layers']], width,
                   bottom=[layer['ms'] for layer in r['layers']], color='k', alpha=.6,
                   label='reduction step' if k == len(rows) - 1 else None)
        ax.set_title(f'Vim-{arch[0].upper()} {dtype}, batch {results["batch"]}', fontsize=9)
        ax.set_xlabel('layer')
        ax.set_ylabel('ms')
        ax.legend(fontsize=7)
    save_figure(fig, osp.join(out_dir, 'breakdown.png'))


def main(argv=None):
    args = parse_args(argv)
    if rebuild_report(args, write_report):
        return
    set_ops_backend(args.ops)
    set_scan_kernel(args.scan_kernel)
    results = dict(device=torch.cuda.get_device_name() if args.device.startswith('cuda') else 'cpu',
                   torch=torch.__version__, scan_kernel=args.scan_kernel, batch=args.batch, layers=args.layers,
                   iters=args.iters, rows=[])
    os.makedirs(args.out_dir, exist_ok=True)
    for arch in args.archs:
        images = make_inputs(args.batch, 0, 224, args.device, count=1)[0]
        for dtype_name in args.dtypes:
            for run in ['none'] + args.runs.split(','):
                row = breakdown(arch, run, dtype_name, args, images)
                results['rows'].append(row)
                print(f'{arch} {dtype_name} {run:10} forward {row["forward_ms"]:8.3f} ms  blocks {row["blocks_ms"]:8.3f}'
                      f'  reduction steps {row["reduce_ms"]:7.3f}', flush=True)
                with open(osp.join(args.out_dir, 'breakdown.json'), 'w') as f:  # partial results survive a time-out
                    json.dump(results, f, indent=1)
    write_report(results, args.out_dir)


if __name__ == '__main__':
    main()
