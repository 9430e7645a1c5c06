"""Compare token reducers on one model in one run: the config's own test set and metric (ImageNet top-1,
ADE20K mIoU, COCO AP, Kinetics-400 top-1, ...) for every method at every FLOPs reduction, layer set and restoration mode.

    # MTR vs every baseline at 20/30/40 % fewer FLOPs on an official checkpoint
    python tools/analysis/compare_reductions.py configs/mtr_vim_cls.py vim_t_midclstok_76p1acc.pth
    # a segmentation model: every restoration mode, two layer sets
    python tools/analysis/compare_reductions.py configs/mtr_vim_seg.py CKPT \
        --restores unmerge stale zero similarity --layers 6,9,12,15,18 4,8,12,16,20
    # rebuild the markdown + plot from a results file
    python tools/analysis/compare_reductions.py --report-only OUT/results.json --out-dir OUT

One mmengine Runner (the config's test dataloader and evaluator, the checkpoint loaded once); between
runs only the backbone's token reduction is swapped (VisionMamba.set_reduction), so every run sees the
same images and weights. Runs: unreduced, then --restores x --layers x --methods x --targets, each
target solved into tokens per layer by the project's schedule. GFLOPs: ReductionInfoHook's backbone
count per image on the real input grids, one scan direction, reduction overhead included. A run whose
target a method cannot reach with a layer set is reported with its error. Writes results.json (the run
plan first, then each run as it ends), results.md and metric_vs_gflops.png into --out-dir; a report
rebuilt from an interrupted run's json says which planned runs it lacks.
"""
import argparse
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from mmengine.config import DictAction  # noqa: E402
from mmengine.runner import Runner  # noqa: E402

from mtr_mm.apis import load_config, task_library  # noqa: E402
from mtr_mm.apis.runner import check_writable  # noqa: E402
from mtr_mm.engine.hooks import find_vim  # noqa: E402
from mtr_mm.reduction import REDUCERS  # noqa: E402
from mtr_mm.reduction.restore import RESTORE_MODES  # noqa: E402
from tools import cli  # noqa: E402
from tools.report_utils import (layer_list, method_table, pyplot, rebuild_report, record_run,  # noqa: E402
                                save_figure, shipped_layers)
from tools.test import build_test_runner, check_test_data  # noqa: E402

# The headline metric of each evaluator, the first one present is tabulated (--metric overrides).
HEADLINE_METRICS = ('accuracy/top1', 'acc/top1', 'mIoU', 'coco/bbox_mAP', 'coco/segm_mAP')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config', nargs='?', help='a config with a test dataloader and evaluator')
    parser.add_argument('checkpoint', nargs='?', help='the model (official Vim file or a tools/train.py checkpoint)')
    parser.add_argument('--out-dir', default='work_dirs/compare_reductions')
    parser.add_argument('--methods', nargs='+', default=sorted(REDUCERS.module_dict), help='default: every reducer')
    parser.add_argument('--targets', nargs='+', type=float, default=[0.2, 0.3, 0.4], help='FLOPs reductions')
    parser.add_argument('--layers', nargs='+', type=layer_list, metavar='L1,L2,...',
                        help="reducing layer sets, each a comma list (default: the config's, else the "
                             'shipped MTR layers)')
    parser.add_argument('--restores', nargs='+', choices=RESTORE_MODES,
                        help="dense models: restoration modes (default: the config's, else unmerge)")
    parser.add_argument('--metric', help=f'metric to tabulate (default: the first of {", ".join(HEADLINE_METRICS)})')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, help='override config keys, k=v')
    parser.add_argument('--report-only', help='rebuild the report from this results json')
    args = parser.parse_args(argv)
    if not args.report_only and not (args.config and args.checkpoint):
        parser.error('give CONFIG and CHECKPOINT (or --report-only results.json)')
    check_writable(args.out_dir, '--out-dir', folder=True)
    return args


def run_specs(methods, targets, layer_sets, restores) -> list:
    specs = [dict(name='none', method=None, target=None, layers=None, restore=None)]
    for restore in restores:
        for layers in layer_sets:
            for method in methods:
                for target in targets:
                    name = f'{method}@{target}'
                    name += f' L{",".join(map(str, layers))}' if len(layer_sets) > 1 else ''
                    name += f' {restore}' if len(restores) > 1 else ''
                    specs.append(dict(name=name, method=method, target=target, layers=layers, restore=restore))
    return specs


def build_runner(cfg, checkpoint: str, out_dir: str) -> Runner:
    """tools/test.py's runner, one process, no reduction yet, ReductionInfoHook on."""
    cfg.model.backbone.reduction = None  # installed per run
    cfg.work_dir = osp.join(out_dir, 'runner')
    cfg.launcher = 'none'
    if not any(hook.get('type') == 'ReductionInfoHook' for hook in cfg.get('custom_hooks', [])):
        cfg.custom_hooks = [*cfg.get('custom_hooks', []), dict(type='ReductionInfoHook')]
    check_test_data(cfg)
    return build_test_runner(cfg, checkpoint)


def evaluate_run(runner, spec: dict) -> dict:
    reduction = None
    if spec['method'] is not None:
        reduction = dict(method=spec['method'], schedule=dict(layers=spec['layers'], flops_reduction=spec['target']))
        if spec['restore'] is not None:  # dense models
            reduction['restore'] = spec['restore']
    try:
        find_vim(runner.model).set_reduction(reduction)
    except ValueError as error:  # the target is out of reach for this method / layer set
        return dict(spec, error=str(error))
    metrics = runner.test()
    numbers = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) or hasattr(v, 'item')}
    return dict(spec, gflops=numbers.pop('backbone_gflops'), gflops_2dir=numbers.pop('backbone_gflops_2dir'),
                gflops_unreduced=numbers.pop('backbone_gflops_unreduced'), metrics=numbers)


def headline_metric(metrics: dict, requested=None) -> str:
    if requested:
        if requested not in metrics:
            raise ValueError(f'--metric {requested!r} is not among the evaluator\'s metrics {sorted(metrics)}')
        return requested
    return next((m for m in HEADLINE_METRICS if m in metrics), sorted(metrics)[0])


def groups(rows: list) -> dict:
    """(restore, layers) -> the rows of that table."""
    tables = {}
    for r in rows:
        if r['method'] is not None:
            tables.setdefault((r['restore'], tuple(r['layers'])), []).append(r)
    return tables


def completeness(results: dict) -> list:
    """Markdown lines saying that a report lacks runs of its recorded plan (an interrupted run)."""
    if 'plan' not in results:
        return ['**No run plan recorded** (results written by an older version): this report may be incomplete.', '']
    done = {r['name'] for r in results['rows']}
    missing = [name for name in results['plan'] if name not in done]
    if not missing:
        return []
    return [f'**Partial report: {len(results["plan"]) - len(missing)} of {len(results["plan"])} planned runs '
            'done** (the run was interrupted); missing: ' + ', '.join(missing), '']


def write_report(results: dict, out_dir: str):
    os.makedirs(out_dir, exist_ok=True)
    rows = [r for r in results['rows'] if 'error' not in r]
    base = next((r for r in rows if r['method'] is None), None)
    if base is None:
        raise ValueError('no report: the results hold no finished unreduced run (interrupted before the first run '
                         'ended); run the comparison again')
    metric = results['metric']
    lines = [f'# Token reducers compared: {results["config"]}', '', *completeness(results),
             f'Checkpoint `{results["checkpoint"]}`, {results["images"]} test images; `{metric}` from the config\'s '
             'evaluator; backbone GFLOPs per image as run (one scan direction, reduction overhead included).', '',
             f'Unreduced: {metric} {base["metrics"][metric]:.2f} at {base["gflops"]:.3f} GFLOPs.']
    for (restore, layers), table in groups(rows).items():
        title = f'layers {list(layers)}' + (f', restoration `{restore}`' if restore else '')
        lines += ['', f'## {title}: {metric} (GFLOPs)', '']
        lines += method_table(table, lambda r: f'{r["metrics"][metric]:.2f} ({r["gflops"]:.3f} G)')
    others = [k for k in base['metrics'] if k != metric]
    lines += ['', '## Every run', '', f'| run | FLOPs reduction | GFLOPs | {metric} | Δ | ' + ' | '.join(others) + ' |',
              '|---' * (5 + len(others)) + '|']
    for r in rows:
        value = r['metrics'][metric]
        lines.append(f'| {r["name"]} | {1 - r["gflops"] / base["gflops"]:.1%} | {r["gflops"]:.3f} | {value:.2f} | '
                     f'{value - base["metrics"][metric]:+.2f} | ' + ' | '.join(f'{r["metrics"][k]:.2f}' for k in others)
                     + ' |')
    failed = [r for r in results['rows'] if 'error' in r]
    if failed:
        lines += ['', '## Runs that could not be scheduled', ''] + [f'- {r["name"]}: {r["error"]}' for r in failed]
    with open(osp.join(out_dir, 'results.md'), 'w') as f:
        f.write('\n'.join(lines) + '\n')
    write_plot(rows, metric, osp.join(out_dir, 'metric_vs_gflops.png'))


def write_plot(rows: list, metric: str, path: str):
    plt = pyplot()
    tables = groups(rows)
    if plt is None or not tables:  # no matplotlib, or only the unreduced run finished
        return
    base = next(r for r in rows if r['method'] is None)
    fig, axes = plt.subplots(1, len(tables), figsize=(4.5 * len(tables) + 1, 4.2), sharey=True, squeeze=False)
    for ax, ((restore, layers), table) in zip(axes[0], tables.items()):
        for method in dict.fromkeys(r['method'] for r in table):
            points = sorted((r['gflops'], r['metrics'][metric]) for r in table if r['method'] == method)
            ax.plot(*zip(*points), 'o-', label=method)
        ax.plot(base['gflops'], base['metrics'][metric], 'k*', markersize=12, label='unreduced')
        ax.set_title(f'layers {",".join(map(str, layers))}' + (f'\nrestoration: {restore}' if restore else ''),
                     fontsize=9)
        ax.set_xlabel('backbone GFLOPs (one direction)')
        ax.grid(alpha=.3)
    axes[0][0].set_ylabel(metric)
    axes[0][0].legend(fontsize=8)
    save_figure(fig, path)


def main(argv=None):
    args = parse_args(argv)
    if rebuild_report(args, write_report):
        return
    cfg = load_config(args.config, args.cfg_options)
    task_library(cfg)
    configured = cfg.model.backbone.get('reduction') or {}
    dense = cfg.model.backbone.get('out_type', 'cls') == 'featmap'
    layer_sets = args.layers or [configured.get('schedule', {}).get('layers') or shipped_layers()]
    restores = (args.restores or [configured.get('restore', 'unmerge')]) if dense else [None]
    if args.restores and not dense:
        raise ValueError('--restores applies to dense (segmentation / detection) models; this config classifies')
    runner = build_runner(cfg, args.checkpoint, args.out_dir)
    specs = run_specs(args.methods, args.targets, layer_sets, restores)
    # The plan is recorded first: a report rebuilt after an interrupt can say which runs it lacks.
    results = dict(config=args.config, checkpoint=args.checkpoint, images=len(runner.test_dataloader.dataset),
                   metric=None, plan=[spec['name'] for spec in specs], rows=[])
    os.makedirs(args.out_dir, exist_ok=True)
    for spec in specs:
        row = evaluate_run(runner, spec)
        if results['metric'] is None:  # fixed by the unreduced run, which comes first
            results['metric'] = headline_metric(row['metrics'], args.metric)
        metric = results['metric']
        record_run(results, row, args.out_dir,
                   lambda r: f'{metric} {r["metrics"][metric]:7.2f}  {r["gflops"]:.3f} GFLOPs')
    write_report(results, args.out_dir)


if __name__ == '__main__':
    cli.run(main)
