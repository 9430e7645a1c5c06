"""mIoU and measured backbone GFLOPs of a Vim segmentation model with every token reducer at every
FLOPs reduction, under every restoration mode of the dense maps.

    # H200: the Fashion scenes model of configs/vim_seg/vim_tiny_upernet_fashion_512.py
    python tools/benchmarks/eval_reduction_seg.py configs/vim_seg/vim_tiny_upernet_fashion_512.py \
        work_dirs/fashion_seg/iter_1600.pth --out-dir work_dirs/fashion_seg_eval
    # rebuild the markdown + plot from a results file
    python tools/benchmarks/eval_reduction_seg.py --report-only OUT/results.json --out-dir OUT

One mmengine Runner (the config's test dataloader, mmseg's IoUMetric, the checkpoint loaded once);
between runs only the backbone's token reduction is swapped (VisionMamba.set_reduction), so every
run sees the same images and weights. Runs: unreduced, then --methods x --targets x --restores with
one schedule layer set (--layers; the default is the set of configs/_base_/reductions/mtr.py).
GFLOPs: ReductionInfoHook's per-image backbone count on the real input grids, one scan direction,
reduction overhead included. Writes results.json, results.md and miou_vs_gflops.png into --out-dir.
"""
import argparse
import json
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from mmengine.config import DictAction  # noqa: E402
from mmengine.runner import Runner  # noqa: E402

from mtr_mm.apis import load_config, task_library  # noqa: E402
from mtr_mm.engine.hooks import find_vim  # noqa: E402
from mtr_mm.reduction.restore import RESTORE_MODES  # noqa: E402
from report_utils import method_table, pyplot, rebuild_report, save_figure  # noqa: E402

METHODS = ('mtr', 'random', 'evit', 'tome', 'pumer', 'utr', 'hsa')
DEFAULT_LAYERS = [6, 9, 12, 15, 18]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config', nargs='?', help='a segmentation config (its test dataloader and evaluator)')
    parser.add_argument('checkpoint', nargs='?', help='the trained model (tools/train.py output)')
    parser.add_argument('--out-dir', default='work_dirs/seg_reduction_eval')
    parser.add_argument('--methods', nargs='+', default=list(METHODS))
    parser.add_argument('--targets', nargs='+', type=float, default=[0.2, 0.3, 0.4], help='FLOPs reductions')
    parser.add_argument('--restores', nargs='+', choices=RESTORE_MODES, default=list(RESTORE_MODES))
    parser.add_argument('--layers', nargs='+', type=int, default=DEFAULT_LAYERS, help='reducing layers')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, help='override config keys, k=v')
    parser.add_argument('--report-only', help='rebuild the report from this results json')
    args = parser.parse_args(argv)
    if not args.report_only and not (args.config and args.checkpoint):
        parser.error('give CONFIG and CHECKPOINT (or --report-only results.json)')
    return args


def run_specs(args) -> list:
    specs = [dict(name='none', method=None, target=None, restore=None)]
    specs += [dict(name=f'{method}@{target} {restore}', method=method, target=target, restore=restore)
              for restore in args.restores for method in args.methods for target in args.targets]
    return specs


def build_runner(args) -> Runner:
    cfg = load_config(args.config, args.cfg_options)
    task_library(cfg)
    cfg.model.backbone.reduction = None  # installed per run
    cfg.load_from = args.checkpoint
    cfg.work_dir = osp.join(args.out_dir, 'runner')
    cfg.launcher = 'none'
    if not any(hook.get('type') == 'ReductionInfoHook' for hook in cfg.get('custom_hooks', [])):
        cfg.custom_hooks = [*cfg.get('custom_hooks', []), dict(type='ReductionInfoHook')]
    return Runner.from_cfg(cfg)


def evaluate_run(runner, spec: dict, layers: list) -> dict:
    vim = find_vim(runner.model)
    reduction = None if spec['method'] is None else dict(
        method=spec['method'], schedule=dict(layers=layers, flops_reduction=spec['target']), restore=spec['restore'])
    try:
        vim.set_reduction(reduction)
    except ValueError as error:  # the target is out of reach for this method / layer set
        return dict(spec, error=str(error))
    metrics = runner.test()
    keys = dict(miou='mIoU', aacc='aAcc', macc='mAcc', gflops='backbone_gflops', gflops_2dir='backbone_gflops_2dir')
    return dict(spec, **{name: float(metrics[key]) for name, key in keys.items()})


def write_report(results: dict, out_dir: str):
    os.makedirs(out_dir, exist_ok=True)
    rows = [r for r in results['rows'] if 'error' not in r]
    base = next(r for r in rows if r['method'] is None)
    restores = list(dict.fromkeys(r['restore'] for r in rows if r['method'] is not None))
    lines = [f'# Token reduction on a segmentation model: {results["config"]}', '',
             f'Checkpoint `{results["checkpoint"]}`, {results["images"]} test images, mmseg IoUMetric; backbone '
             f'GFLOPs per image (one scan direction, overhead included) as run. Reducing layers: {results["layers"]}.',
             '', f'Unreduced: mIoU {base["miou"]:.2f}, aAcc {base["aacc"]:.2f} at {base["gflops"]:.2f} GFLOPs.']
    for restore in restores:
        grid = [r for r in rows if r['restore'] == restore]
        lines += ['', f'## Restoration `{restore}`: mIoU (GFLOPs)', '']
        lines += method_table(grid, lambda r: f'{r["miou"]:.2f} ({r["gflops"]:.2f} G)')
    lines += ['', '## Every run', '', '| run | FLOPs reduction | GFLOPs | mIoU | Δ mIoU | aAcc | mAcc |',
              '|---' * 7 + '|']
    for r in rows:
        lines.append(f'| {r["name"]} | {1 - r["gflops"] / base["gflops"]:.1%} | {r["gflops"]:.3f} | {r["miou"]:.2f} | '
                     f'{r["miou"] - base["miou"]:+.2f} | {r["aacc"]:.2f} | {r["macc"]:.2f} |')
    failed = [r for r in results['rows'] if 'error' in r]
    if failed:
        lines += ['', '## Runs that could not be scheduled', ''] + [f'- {r["name"]}: {r["error"]}' for r in failed]
    with open(osp.join(out_dir, 'results.md'), 'w') as f:
        f.write('\n'.join(lines) + '\n')
    write_plot(rows, restores, osp.join(out_dir, 'miou_vs_gflops.png'))


def write_plot(rows: list, restores: list, path: str):
    plt = pyplot()
    if plt is None:
        return
    base = next(r for r in rows if r['method'] is None)
    fig, axes = plt.subplots(1, len(restores), figsize=(4.5 * len(restores), 4.2), sharey=True, squeeze=False)
    for ax, restore in zip(axes[0], restores):
        grid = [r for r in rows if r['restore'] == restore]
        for method in dict.fromkeys(r['method'] for r in grid):
            points = sorted((r['gflops'], r['miou']) for r in grid if r['method'] == method)
            ax.plot(*zip(*points), 'o-', label=method)
        ax.plot(base['gflops'], base['miou'], 'k*', markersize=12, label='unreduced')
        ax.set_title(f'restoration: {restore}')
        ax.set_xlabel('backbone GFLOPs (one direction)')
        ax.grid(alpha=.3)
    axes[0][0].set_ylabel('mIoU (%)')
    axes[0][0].legend(fontsize=8)
    save_figure(fig, path)


def main(argv=None):
    args = parse_args(argv)
    if rebuild_report(args, write_report):
        return
    runner = build_runner(args)
    results = dict(config=args.config, checkpoint=args.checkpoint, layers=args.layers,
                   images=len(runner.test_dataloader.dataset), rows=[])
    os.makedirs(args.out_dir, exist_ok=True)
    for spec in run_specs(args):
        row = evaluate_run(runner, spec, args.layers)
        results['rows'].append(row)
        print(f'{row["name"]:28} ' + (f'mIoU {row["miou"]:6.2f}  {row["gflops"]:.3f} GFLOPs' if 'error' not in row
                                      else row['error']), flush=True)
        with open(osp.join(args.out_dir, 'results.json'), 'w') as f:  # partial results survive a time-out
            json.dump(results, f, indent=1)
    write_report(results, args.out_dir)


if __name__ == '__main__':
    main()
