"""Top-1 and exact GFLOPs of a Vim classifier with every token reducer, and an ablation of MTR.

    # H200: the checkpoint of train_fashion_cls.py on the full held-out test set (10,000 images)
    python tools/benchmarks/eval_reduction_cls.py work_dirs/fashion_vim_t/vim_fashion.pth \
        --out-dir work_dirs/fashion_eval
    # CPU smoke run (a depth-4 test checkpoint needs layer sets that fit it)
    python tools/benchmarks/eval_reduction_cls.py CKPT --device cpu --limit 8 --layers 0 1 2 \
        --ablation-layers 0,1,2 0,2 1,2 --out-dir /tmp/eval
    # rebuild the markdown + plot from a results file
    python tools/benchmarks/eval_reduction_cls.py --report-only OUT/results.json --out-dir OUT

Runs, all on the same images (the fixed test set of train_fashion_cls.py: images 0..N-1 of the
'cls_test' part, --test-seed) and the same weights:

- unreduced;
- every reducer (--methods) at every FLOPs reduction (--targets), one schedule layer set for all
  (--layers), each solved into tokens per layer by the project's target schedule;
- the MTR ablation at --ablation-targets, one open choice changed at a time from the defaults
  (post-softplus Δ, keep_ratio 0.75, plain-mean merge, residual + hidden similarity, --layers):
  delta_activation 'none', keep_ratio 0 / 0.25 / 0.5, merge_weights 'size', similarity 'hidden',
  and each of --ablation-layers.

GFLOPs: the analytic counter, one scan direction (the convention of the published 1.45 G of Vim-T),
reduction overhead included, of exactly the schedule each run used. A run whose target a method
cannot reach (e.g. at most half the tokens per layer for ToMe) is reported with its error.
Writes results.json, results.md and top1_vs_gflops.png into --out-dir.
"""
import argparse
import json
import os
import os.path as osp
import sys
import time

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

import torch  # noqa: E402

from mtr_mm import checkpoint as ckpt  # noqa: E402
from mtr_mm.data import fashion_scenes as fs  # noqa: E402
from mtr_mm.ops import cuda_kernels_available, set_ops_backend  # noqa: E402
from train_fashion_cls import DTYPES, build_model, evaluate_top1  # noqa: E402
from tools.report_utils import (layer_list, method_table, pyplot, rebuild_report, record_run,  # noqa: E402
                                save_figure, shipped_layers)

METHODS = ('mtr', 'random', 'evit', 'tome', 'pumer', 'utr', 'hsa')
# One MTR choice changed at a time from its defaults (keep_ratio 0.75, 'block', 'mean', 'softplus').
ABLATION = (('delta_activation', ('none', )), ('keep_ratio', (0.0, 0.25, 0.5)), ('merge_weights', ('size', )),
            ('similarity', ('hidden', )))


def parse_args(argv=None):
    cuda = torch.cuda.is_available()
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('checkpoint', nargs='?', help='a checkpoint of train_fashion_cls.py')
    parser.add_argument('--out-dir', default='work_dirs/fashion_eval')
    parser.add_argument('--methods', nargs='+', default=list(METHODS))
    parser.add_argument('--targets', nargs='+', type=float, default=[0.2, 0.3, 0.4], help='FLOPs reductions')
    parser.add_argument('--layers', nargs='+', type=int, default=shipped_layers(),
                        help='reducing layers (default: the shipped MTR classification configs)')
    parser.add_argument('--ablation-targets', nargs='*', type=float, default=[0.4], help='none: no ablation')
    parser.add_argument('--ablation-layers', nargs='*', type=layer_list,
                        default=[[4, 8, 12, 16, 20], [2, 5, 8, 11, 14, 17, 20], [8, 11, 14, 17, 20],
                                 [6, 8, 10, 12, 14, 16, 18], [10, 13, 16, 19]],
                        help='layer sets, each a comma list')
    parser.add_argument('--limit', type=int, default=10000, help='test images (the first N of the fixed set)')
    parser.add_argument('--test-seed', type=int, default=0)
    parser.add_argument('--batch', type=int, default=500)
    parser.add_argument('--device', default='cuda' if cuda else 'cpu')
    parser.add_argument('--dtype', choices=list(DTYPES), default='bf16' if cuda else 'fp32', help='autocast dtype')
    parser.add_argument('--ops', choices=['auto', 'torch', 'cuda'], default='auto', help='Mamba ops backend')
    parser.add_argument('--fashion-dir', help='Fashion-MNIST .gz folder (default: see mtr_mm.data.fashion_scenes)')
    parser.add_argument('--report-only', help='rebuild the report from this results json')
    args = parser.parse_args(argv)
    if not args.report_only and not args.checkpoint:
        parser.error('give a checkpoint (or --report-only results.json)')
    return args


def run_specs(args) -> list:
    """Every run: the unreduced baseline, the method x target grid, the MTR ablation."""
    def spec(group, method=None, target=None, layers=None, factor=None, value=None):
        options = {factor: value} if factor in dict(ABLATION) else {}
        name = 'none' if method is None else f'{method}@{target}'
        if factor is not None:
            name += ' defaults' if factor == 'defaults' else f' {factor}={value}'
        return dict(name=name, group=group, method=method, options=options, target=target, layers=layers,
                    factor=factor, value=value)

    specs = [spec('baseline')]
    specs += [spec('main', m, t, args.layers) for m in args.methods for t in args.targets]
    for target in args.ablation_targets:
        specs.append(spec('ablation', 'mtr', target, args.layers, 'defaults'))
        specs += [spec('ablation', 'mtr', target, args.layers, factor, value)
                  for factor, values in ABLATION for value in values]
        specs += [spec('ablation', 'mtr', target, layers, 'layers', ','.join(map(str, layers)))
                  for layers in args.ablation_layers if layers != args.layers]
    return specs


def reduction_cfg(spec: dict):
    if spec['method'] is None:
        return None
    return dict(method=dict(type=spec['method'], **spec['options']),
                schedule=dict(layers=spec['layers'], flops_reduction=spec['target']))


def config_key(spec: dict) -> str:
    """Runs with equal keys are the same computation (the ablation default is a grid run)."""
    return json.dumps([spec['method'], spec['options'], spec['target'], spec['layers']], sort_keys=True)


def flops_of(model) -> dict:
    """Exact GFLOPs (one direction, overhead included) and tokens removed after each layer."""
    grid = model.pos_grid
    base, total = model.flops(grid, reduced=False).total, model.flops(grid).total
    removed = {i: r for i, r in enumerate(model.removed_per_layer(grid)) if r}
    return dict(gflops=total / 1e9, flops_reduction=1 - total / base, removed=removed)


def evaluate_run(spec, state_dict, model_args, images, labels, args) -> dict:
    row = dict(spec)
    try:
        model = build_model(model_args['embed_dims'], model_args['depth'], reduction=reduction_cfg(spec))
    except ValueError as error:  # the target is out of reach for this method / layer set
        return dict(row, error=str(error))
    ckpt.load_into(model, state_dict, args.checkpoint)
    model.to(args.device)
    begin = time.perf_counter()
    row['top1'] = evaluate_top1(model, images, labels, args.batch, args.device, args.dtype)
    row['seconds'] = time.perf_counter() - begin
    return dict(row, **flops_of(model))


def fmt_row(row: dict, reference: float) -> str:
    removed = ' '.join(f'{i}:{r}' for i, r in row['removed'].items()) or '-'
    return (f'| {row["name"]} | {row["flops_reduction"]:.1%} | {row["gflops"]:.3f} | {row["top1"]:.2f} | '
            f'{row["top1"] - reference:+.2f} | {removed} |')


def write_report(results: dict, out_dir: str):
    os.makedirs(out_dir, exist_ok=True)
    rows = results['rows']
    ok = [r for r in rows if 'error' not in r]
    base = next(r for r in ok if r['group'] == 'baseline')
    header = '| run | FLOPs reduction | GFLOPs | top-1 | Δ top-1 vs {} | tokens removed (layer:r) |'
    lines = [f'# Token reduction on Fashion-MNIST-on-photos: {results["device"]}', '',
             f'Checkpoint `{results["checkpoint"]}` (top-1 at the end of training: {results["checkpoint_top1"]:.2f}), '
             f'{results["test_count"]} test images (seed {results["test_seed"]}), {results["dtype"]}, '
             f'torch {results["torch"]}, Mamba CUDA kernels: {results["cuda_kernels"]}. GFLOPs: one scan '
             'direction, reduction overhead included. Reducing layers of the grid: '
             f'{results["layers"]}.', '', '## Every reducer: top-1 % (GFLOPs)', '',
             f'Unreduced: {base["top1"]:.2f} % at {base["gflops"]:.3f} GFLOPs.', '']
    lines += method_table([r for r in ok if r['group'] == 'main'],
                          lambda r: f'{r["top1"]:.2f} ({r["gflops"]:.3f} G)')
    lines += ['', '## Every reducer: details', '', header.format('unreduced'), '|---' * 6 + '|']
    lines += [fmt_row(r, base['top1']) for r in ok if r['group'] != 'ablation']
    ablation = [r for r in ok if r['group'] == 'ablation']
    if ablation:
        defaults = {r['target']: r['top1'] for r in ablation if r['factor'] == 'defaults'}
        lines += ['', '## MTR ablation (one choice changed from the defaults)', '',
                  header.format('MTR defaults'), '|---' * 6 + '|']
        lines += [fmt_row(r, defaults.get(r['target'], float('nan'))) for r in ablation]
    failed = [r for r in rows if 'error' in r]
    if failed:
        lines += ['', '## Runs that could not be scheduled', '']
        lines += [f'- {r["name"]}: {r["error"]}' for r in failed]
    with open(osp.join(out_dir, 'results.md'), 'w') as f:
        f.write('\n'.join(lines) + '\n')
    write_plot(ok, osp.join(out_dir, 'top1_vs_gflops.png'))


def write_plot(rows: list, path: str):
    plt = pyplot()
    if plt is None:
        return
    base = next(r for r in rows if r['group'] == 'baseline')
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    for method in dict.fromkeys(r['method'] for r in rows if r['group'] == 'main'):
        points = sorted((r['gflops'], r['top1']) for r in rows if r['group'] == 'main' and r['method'] == method)
        left.plot(*zip(*points), 'o-', label=method)
    left.plot(base['gflops'], base['top1'], 'k*', markersize=12, label='unreduced')
    left.set_xlabel('GFLOPs (one direction, overhead included)')
    left.set_ylabel('top-1 (%)')
    left.set_title('every reducer')
    left.grid(alpha=.3)
    left.legend(fontsize=8)
    ablation = [r for r in rows if r['group'] == 'ablation']
    right.barh(range(len(ablation)), [r['top1'] for r in ablation], color='tab:blue')
    right.set_yticks(range(len(ablation)), [r['name'] for r in ablation], fontsize=7)
    right.axvline(base['top1'], color='k', linestyle='--', label='unreduced')
    right.invert_yaxis()
    right.set_xlabel('top-1 (%)')
    right.set_title('MTR ablation')
    if ablation:
        low = min(r['top1'] for r in ablation)
        right.set_xlim(max(low - 5, 0), max(base['top1'], *(r['top1'] for r in ablation)) + 1)
        right.legend(fontsize=8)
    save_figure(fig, path)


def main(argv=None):
    args = parse_args(argv)
    if rebuild_report(args, write_report):
        return
    set_ops_backend(args.ops)
    checkpoint = ckpt.load_file(args.checkpoint)
    state_dict, model_args = ckpt.extract_state_dict(checkpoint), checkpoint['args']
    sources = fs.load_sources(args.fashion_dir, 'test', args.device)
    images, labels = fs.cls_set(sources, args.test_seed, 'cls_test', args.limit)
    results = dict(checkpoint=args.checkpoint, checkpoint_top1=model_args.get('test_top1'),
                   device=torch.cuda.get_device_name() if args.device.startswith('cuda') else 'cpu',
                   torch=torch.__version__, cuda_kernels=cuda_kernels_available() and args.device.startswith('cuda'),
                   dtype=args.dtype, test_count=len(labels), test_seed=args.test_seed, layers=args.layers, rows=[])
    done = {}
    os.makedirs(args.out_dir, exist_ok=True)
    for spec in run_specs(args):
        key = config_key(spec)
        if key in done:  # same computation as an earlier run: copy its numbers
            row = dict(spec, **{k: v for k, v in done[key].items() if k not in spec})
        else:
            row = done[key] = evaluate_run(spec, state_dict, model_args, images, labels, args)
        record_run(results, row, args.out_dir,
                   lambda r: f'top-1 {r["top1"]:6.2f}  {r["gflops"]:.3f} GFLOPs  -{r["flops_reduction"]:.1%}')
    write_report(results, args.out_dir)


if __name__ == '__main__':
    main()
