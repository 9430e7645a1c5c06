"""Compare token reducers on one model in one run: the config's own test set and metric (ImageNet top-1,
ADE20K mIoU, COCO AP, Kinetics-400 top-1, ...) for every method at every FLOPs reduction, layer set and restoration mode.

    # MTR vs every baseline at 20/30/40 % fewer FLOPs on an official checkpoint
    python tools/analysis/compare_reductions.py configs/mtr_vim_cls.py vim_t_midclstok_76p1acc.pth
    # a segmentation model: every restoration mode, two layer sets
    python tools/analysis/compare_reductions.py configs/mtr_vim_seg.py CKPT \
        --restores unmerge stale zero similarity --layers 4,8,12,16,20 6,9,12,15,18
    # the honest protocol: each method's layer set chosen on the validation split, reported on test
    python tools/analysis/compare_reductions.py CONFIG CKPT --select-on val \
        --layer-candidates 6,9,12,15,18 4,8,12,16,20 5,9,13,17,21
    # ... and MTR's knobs too, jointly with its layer set (every layer set x every knob combination)
    python tools/analysis/compare_reductions.py CONFIG CKPT --methods mtr --select-on val \
        --knob-candidates mtr.keep_ratio=0.5,0.25,0.75 mtr.similarity=hidden,block
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

Every metric comes with a 95 % bootstrap interval over the test images (the evaluator's own metric
recomputed on resampled per-image results), and a method whose paired bootstrap difference to the
best one of its column includes 0 is marked as within noise of it.

--select-on val: nothing is chosen on the test images. For each method (and restoration mode), the
layer set among --layer-candidates with the best metric on the config's val_dataloader (which must
read other images than its test_dataloader) is chosen, at each target (or once, at --select-target);
ties go to the earlier candidate. With --knob-candidates METHOD.KNOB=V1,V2,..., a method's knobs are
chosen jointly with its layer set: its candidates are every layer set x every combination of its
knob values (layer sets outermost, then the knobs in the order given, each knob's values in the order
given: list the shipped value first and a tie keeps it); with --knob-search one-at-a-time, only its
default knobs (first, so a tie keeps them) and each knob alone changed to each of its other candidate
values. Other methods keep their default knobs. Test then reports every method at the one shared layer
set (--layers, default the config's) with its default knobs, and at its own val-chosen set and knobs,
and where the two differ, the val-chosen run minus the shared one with the 95 % interval of that paired
bootstrap difference.
"""
import argparse
import ast
import copy
import itertools
import logging
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

import numpy as np  # noqa: E402
from mmengine.config import DictAction  # noqa: E402
from mmengine.logging import MMLogger  # noqa: E402
from mmengine.runner import Runner  # noqa: E402

from mtr_mm.apis import load_config, task_library  # noqa: E402
from mtr_mm.apis.runner import check_writable  # noqa: E402
from mtr_mm.engine.hooks import find_vim  # noqa: E402
from mtr_mm.reduction import REDUCERS, build_reducer  # noqa: E402
from mtr_mm.reduction.base import reducer_knobs  # noqa: E402
from mtr_mm.reduction.restore import RESTORE_MODES  # noqa: E402
from tools import cli  # noqa: E402
from tools.report_utils import (layer_list, method_table, pyplot, rebuild_report, record_run,  # noqa: E402
                                save_figure, shipped_layers)
from tools.test import build_test_runner, check_test_data  # noqa: E402

# The headline metric of each evaluator, the first one present is tabulated (--metric overrides).
HEADLINE_METRICS = ('accuracy/top1', 'acc/top1', 'mIoU', 'coco/bbox_mAP', 'coco/segm_mAP')
BOOTSTRAP_SAMPLES = 1000
BOOTSTRAP_SEED = 0


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config', nargs='?', help='a config with a test dataloader and evaluator')
    parser.add_argument('checkpoint', nargs='?', help='the model (official Vim file or a tools/train.py checkpoint)')
    parser.add_argument('--out-dir', default='work_dirs/compare_reductions')
    parser.add_argument('--methods', nargs='+', default=sorted(REDUCERS.module_dict), help='default: every reducer')
    parser.add_argument('--targets', nargs='+', type=float, default=[0.2, 0.3, 0.4], help='FLOPs reductions')
    parser.add_argument('--layers', nargs='+', type=layer_list, metavar='L1,L2,...',
                        help="reducing layer sets, each a comma list (default: the config's, else the "
                             "shipped MTR layers of the config's task)")
    parser.add_argument('--restores', nargs='+', choices=RESTORE_MODES,
                        help="dense models: restoration modes (default: the config's, else unmerge)")
    parser.add_argument('--metric', help=f'metric to tabulate (default: the first of {", ".join(HEADLINE_METRICS)})')
    parser.add_argument('--select-on', choices=['val'], help="choose each method's layer set on the config's "
                        'val_dataloader (other images than the test set), then report on test')
    parser.add_argument('--layer-candidates', nargs='+', type=layer_list, metavar='L1,L2,...',
                        help='the layer sets --select-on chooses from (default: --layers)')
    parser.add_argument('--knob-candidates', nargs='+', type=knob_values, metavar='METHOD.KNOB=V1,V2',
                        help="reducer knob values --select-on chooses from, jointly with the layer set "
                             '(e.g. mtr.keep_ratio=0.25,0.5 mtr.similarity=hidden,block)')
    parser.add_argument('--knob-search', choices=['grid', 'one-at-a-time'], default='grid',
                        help='grid: every combination of the knob candidates; one-at-a-time: the default knobs '
                             'and each single knob changed to one of its other candidates (fewer runs)')
    parser.add_argument('--select-target', type=float, help='choose once per method at this FLOPs reduction '
                        '(default: at every target)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, help='override config keys, k=v')
    parser.add_argument('--report-only', help='rebuild the report from this results json')
    args = parser.parse_args(argv)
    if not args.report_only and not (args.config and args.checkpoint):
        parser.error('give CONFIG and CHECKPOINT (or --report-only results.json)')
    if not args.select_on and (args.layer_candidates or args.select_target is not None):
        parser.error('--layer-candidates and --select-target choose on a split: add --select-on val')
    if args.knob_candidates and not args.select_on:
        parser.error('--knob-candidates choose on a split: add --select-on val')
    args.knob_candidates = knob_grid(args.knob_candidates or [], args.methods, parser.error)
    check_writable(args.out_dir, '--out-dir', folder=True)
    return args


def knob_values(text: str) -> tuple:
    """argparse type of METHOD.KNOB=V1,V2,...: (method, knob, [values]); each value a Python literal
    (0.25, True) or else a string (hidden)."""
    name, _, values = text.partition('=')
    method, _, knob = name.partition('.')
    if not (method and knob and values):
        raise argparse.ArgumentTypeError(f'{text!r} is not METHOD.KNOB=V1,V2,... (e.g. mtr.keep_ratio=0.25,0.5)')

    def value(item):
        try:
            return ast.literal_eval(item)
        except (ValueError, SyntaxError):
            return item
    return method, knob, [value(item) for item in values.split(',')]


def knob_grid(items: list, methods: list, error) -> dict:
    """method -> {knob: [values]}, every value checked by building the reducer with it (``error`` on
    a method not compared, a knob given twice, a knob the reducer lacks or a value it refuses)."""
    grid = {}
    for method, knob, values in items:
        if method not in methods:
            error(f'--knob-candidates {method}.{knob}: {method!r} is not among the compared methods {methods} '
                  '(add it to --methods or drop its knobs)')
        if knob in grid.setdefault(method, {}):
            error(f'--knob-candidates: {method}.{knob} is given twice; give all its values in one METHOD.KNOB=V1,V2')
        for value in values:
            try:
                build_reducer(dict(type=method, **{knob: value}))
            except (ValueError, TypeError) as refused:
                error(f'--knob-candidates {method}.{knob}={value!r}: {refused}')
        grid[method][knob] = values
    return grid


def knob_combinations(grid: dict, method: str, search: str = 'grid') -> list:
    """The knob settings a method is chosen among: every combination of its candidate values (the
    first knob's values varying slowest), or with ``search='one-at-a-time'`` its defaults ({}) and then
    each knob alone at each of its non-default candidates; only its defaults ({}) without candidates."""
    knobs = grid.get(method, {})
    if search == 'one-at-a-time':
        defaults = reducer_knobs(method)
        return [{}] + [{k: v} for k, values in knobs.items() for v in values if v != defaults[k]]
    return [dict(zip(knobs, values)) for values in itertools.product(*knobs.values())]


def run_specs(methods, targets, layer_sets, restores) -> list:
    specs = [dict(name='none', method=None, target=None, layers=None, restore=None)]
    for restore in restores:
        for layers in layer_sets:
            for method in methods:
                for target in targets:
                    name = f'{method}@{target}'
                    name += f' L{",".join(map(str, layers))}' if len(layer_sets) > 1 else ''
                    name += f' {restore}' if len(restores) > 1 else ''
                    specs.append(dict(name=name, method=method, target=target, layers=layers, restore=restore,
                                      table=f'layers {list(layers)}'))
    return specs


def knobs_text(knobs: dict) -> str:
    return ' '.join(f'{k}={v}' for k, v in knobs.items())


def spec_name(method, target, layers, restore, split='', knobs=None) -> str:
    return (f'{split}{method}@{target} L{",".join(map(str, layers))}' + (f' {restore}' if restore else '')
            + (f' {knobs_text(knobs)}' if knobs else ''))


def select_on_val(val_runner, args, layer_sets, restores, results, metric: str) -> dict:
    """(restore, method, target) -> (layer set, knobs) of the candidate with the best val metric (ties:
    the earlier candidate); every val run is recorded with split 'val', every choice in results['chosen']."""
    candidates = args.layer_candidates or layer_sets  # default: --layers, else the config's set
    select_targets = [args.select_target] if args.select_target is not None else args.targets
    chosen = {}
    for restore in restores:
        for method in args.methods:
            for target in select_targets:
                best, settings = None, knob_combinations(args.knob_candidates, method, args.knob_search)
                for layers, knobs in itertools.product(candidates, settings):
                    spec = dict(name=spec_name(method, target, layers, restore, 'val ', knobs), method=method,
                                target=target, layers=layers, knobs=knobs, restore=restore, split='val')
                    row = evaluate_run(val_runner, spec)
                    record_run(results, row, args.out_dir, lambda r: f'{metric} {r["metrics"][metric]:7.2f} (val)')
                    if 'error' not in row and (best is None or row['metrics'][metric] > best['metrics'][metric]):
                        best = row
                if best is None:  # the target is out of reach for every candidate
                    continue
                for t in (args.targets if args.select_target is not None else [target]):
                    chosen[(restore, method, t)] = (best['layers'], best['knobs'])
                    results['chosen'].append(dict(restore=restore, method=method, target=t, chosen_on='val',
                                                  layers=best['layers'], knobs=best['knobs'],
                                                  val_metric=best['metrics'][metric]))
    return chosen


def test_specs(args, layer_sets, restores, chosen) -> list:
    """The test runs of --select-on val: every method at the shared layer set with its default knobs,
    then at its own val-chosen set and knobs (a run already made is reused, not repeated)."""
    shared = layer_sets[0]
    knobs = ' and knobs' if args.knob_candidates else ''
    specs = [dict(name='none', method=None, target=None, layers=None, restore=None)]
    for table, choice_of in ((f'shared layer set {list(shared)}' + (', default knobs' if knobs else ''),
                              lambda key: (shared, {})),
                             (f'each method at its own val-chosen layer set{knobs}', chosen.get)):
        for restore in restores:
            for method in args.methods:
                for target in args.targets:
                    choice = choice_of((restore, method, target))
                    if choice is not None:
                        specs.append(dict(name=spec_name(method, target, choice[0], restore, knobs=choice[1]),
                                          method=method, target=target, layers=choice[0], knobs=choice[1],
                                          restore=restore, table=table))
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


def val_config(cfg):
    """The config with its val_dataloader / val_evaluator as the test ones, refused when they read
    the very images of the test set (choosing there would be choosing on test)."""
    if cfg.get('val_dataloader') is None:
        raise ValueError('--select-on val needs a val_dataloader in the config (a validation set of other images '
                         'than the test set; tools/data/make_fashion_scenes.py writes one for the Fashion data)')
    if cfg.val_dataloader.dataset == cfg.test_dataloader.dataset:
        raise ValueError('--select-on val: the config\'s val_dataloader reads the same images as its test_dataloader; '
                         'point val_dataloader.dataset at a validation split (e.g. --cfg-options '
                         'val_dataloader.dataset.ann_file=meta/val.txt)')
    cfg = copy.deepcopy(cfg)
    cfg.test_dataloader = cfg.val_dataloader
    cfg.test_evaluator = cfg.get('val_evaluator', cfg.test_evaluator)
    return cfg


def keep_per_image_results(runner) -> dict:
    """Make every metric of the runner's test evaluator keep the per-image results it last
    computed from (metric -> list), for the bootstrap."""
    kept = {}
    for metric in runner.test_loop.evaluator.metrics:
        def compute(results, metric=metric, original=metric.compute_metrics):
            kept[metric] = (original, list(results))
            return original(results)
        metric.compute_metrics = compute
    return kept


def bootstrap(kept: dict, metric_name: str) -> list:
    """The headline metric recomputed by the evaluator's own code on BOOTSTRAP_SAMPLES resamples
    (with replacement) of the per-image results; the same resamples for every run of a data set."""
    logger = MMLogger.get_current_instance()
    for metric, (compute, results) in kept.items():
        prefix = f'{metric.prefix}/' if metric.prefix else ''
        if not metric_name.startswith(prefix):
            continue
        indices = np.random.default_rng(BOOTSTRAP_SEED).integers(0, len(results), (BOOTSTRAP_SAMPLES, len(results)))
        level, logger.level = logger.level, logging.ERROR  # the metric's own tables, once per resample
        try:
            values = [compute([results[i] for i in sample]).get(metric_name[len(prefix):]) for sample in indices]
        finally:
            logger.level = level
        if values[0] is not None:
            return [round(float(v), 4) for v in values]
    return []


def interval(samples: list) -> list:
    return [float(np.percentile(samples, 2.5)), float(np.percentile(samples, 97.5))] if samples else []


def reduction_of(spec: dict):
    if spec['method'] is None:
        return None
    method = dict(type=spec['method'], **spec['knobs']) if spec.get('knobs') else spec['method']
    reduction = dict(method=method, schedule=dict(layers=spec['layers'], flops_reduction=spec['target']))
    if spec['restore'] is not None:  # dense models
        reduction['restore'] = spec['restore']
    return reduction


def evaluate_run(runner, spec: dict, kept: dict = None, metric_name: str = None) -> dict:
    """One run; with ``kept`` (keep_per_image_results) and the headline metric name, its
    bootstrap samples and 95 % interval too."""
    try:
        find_vim(runner.model).set_reduction(reduction_of(spec))
    except ValueError as error:  # the target is out of reach for this method / layer set
        return dict(spec, error=str(error))
    metrics = runner.test()
    numbers = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) or hasattr(v, 'item')}
    row = dict(spec, gflops=numbers.pop('backbone_gflops'), gflops_2dir=numbers.pop('backbone_gflops_2dir'),
               gflops_unreduced=numbers.pop('backbone_gflops_unreduced'), metrics=numbers)
    if kept is not None:
        name = metric_name or headline_metric(numbers)
        row['bootstrap'] = bootstrap(kept, name)
        row['interval'] = interval(row['bootstrap'])
    return row


def headline_metric(metrics: dict, requested=None) -> str:
    if requested:
        if requested not in metrics:
            raise ValueError(f'--metric {requested!r} is not among the evaluator\'s metrics {sorted(metrics)}')
        return requested
    return next((m for m in HEADLINE_METRICS if m in metrics), sorted(metrics)[0])


def groups(rows: list) -> dict:
    """(restore, table) -> the test rows of that table."""
    tables = {}
    for r in rows:
        if r['method'] is not None and r.get('split', 'test') == 'test':
            tables.setdefault((r['restore'], r.get('table', f'layers {r["layers"]}')), []).append(r)
    return tables


def completeness(results: dict) -> list:
    """Markdown lines saying that a report lacks runs of its recorded plan (an interrupted run)."""
    if 'plan' not in results:
        return ['**No run plan recorded** (results written by an older version): this report may be incomplete.', '']
    if results['plan'] is None:
        return ['**Partial report**: interrupted while the validation split was choosing (layer sets, knobs).', '']
    done = {r['name'] for r in results['rows'] if r.get('split', 'test') == 'test'}
    missing = [name for name in results['plan'] if name not in done]
    if not missing:
        return []
    return [f'**Partial report: {len(results["plan"]) - len(missing)} of {len(results["plan"])} planned runs '
            'done** (the run was interrupted); missing: ' + ', '.join(missing), '']


def best_and_ties(table: list, metric: str) -> dict:
    """Per target, the best run (id -> 'best') and the runs within noise of it (id -> 'tie'): the
    paired bootstrap difference (same resampled images) to the best has a 95 % interval with 0."""
    marks = {}
    for target in {r['target'] for r in table}:
        column = [r for r in table if r['target'] == target]
        best = max(column, key=lambda r: r['metrics'][metric])
        marks[id(best)] = 'best'
        for r in column:
            if r is not best and r.get('bootstrap') and best.get('bootstrap'):
                difference = np.array(best['bootstrap']) - np.array(r['bootstrap'])
                if np.percentile(difference, 2.5) <= 0:
                    marks[id(r)] = 'tie'
    return marks


def cell_text(row: dict, metric: str, mark: str = None, with_layers: bool = False) -> str:
    text = f'{row["metrics"][metric]:.2f}'
    text = f'**{text}**' if mark == 'best' else text + (' ≈' if mark == 'tie' else '')
    if row.get('interval'):
        text += f' [{row["interval"][0]:.1f}, {row["interval"][1]:.1f}]'
    text += f' ({row["gflops"]:.3f} G)'
    if with_layers:
        text += f' L{",".join(map(str, row["layers"]))}' + (f' {knobs_text(row["knobs"])}' if row.get('knobs') else '')
    return text


def selection_lines(rows: list, metric: str) -> list:
    """The val runs: per method, target and knob setting, each candidate layer set's val metric; the
    chosen candidate of each method and target in bold."""
    val = [r for r in rows if r.get('split') == 'val']
    if not val:
        return []
    candidates = list(dict.fromkeys(tuple(r['layers']) for r in val))
    lines = ['', f'## Chosen on the validation split: {metric} on val per candidate (chosen in bold)', '',
             '| method | target | restoration | knobs | ' + ' | '.join(','.join(map(str, c)) for c in candidates)
             + ' |', '|---' * (4 + len(candidates)) + '|']
    for key in dict.fromkeys((r['method'], r['target'], r['restore']) for r in val):
        runs = {(tuple(r['layers']), knobs_text(r.get('knobs') or {})): r for r in val
                if (r['method'], r['target'], r['restore']) == key}
        ok = [r for r in runs.values() if 'error' not in r]
        best = max(ok, key=lambda r: r['metrics'][metric]) if ok else None  # first maximum: earlier candidate
        for knobs in dict.fromkeys(knobs for _, knobs in runs):
            cells = []
            for c in candidates:
                r = runs.get((c, knobs))
                text = 'n/a' if r is None or 'error' in r else f'{r["metrics"][metric]:.2f}'
                cells.append(f'**{text}**' if r is best else text)
            lines.append(f'| {key[0]} | -{key[1]:.0%} | {key[2] or "-"} | {knobs or "default"} | ' + ' | '.join(cells)
                         + ' |')
    return lines


def chosen_vs_shared_lines(rows: list, metric: str) -> list:
    """--select-on val: per method and target whose val-chosen run differs from its shared-table run
    (another layer set or knobs), chosen minus shared on the same resampled test images, with the
    95 % interval of that paired difference; within noise when it includes 0."""
    tables = groups(rows)
    shared = {(r['restore'], r['method'], r['target']): r for (_, name), table in tables.items()
              if name.startswith('shared') for r in table}
    pairs = []
    for (_, name), table in tables.items():
        for r in table if name.startswith('each method') else []:
            old = shared.get((r['restore'], r['method'], r['target']))
            if old is not None and old['name'] != r['name'] and old.get('bootstrap') and r.get('bootstrap'):
                pairs.append((old, r))
    if not pairs:
        return []
    lines = ['', f'## Val-chosen minus shared on test: {metric}, paired 95 % bootstrap interval', '',
             '| method | target | restoration | shared | val-chosen | difference | within noise |', '|---' * 7 + '|']
    for old, new in pairs:
        low, high = interval(list(np.array(new['bootstrap']) - np.array(old['bootstrap'])))
        lines.append(f'| {new["method"]} | -{new["target"]:.0%} | {new["restore"] or "-"} | '
                     f'{old["metrics"][metric]:.2f} | {new["metrics"][metric]:.2f} | '
                     f'{new["metrics"][metric] - old["metrics"][metric]:+.2f} [{low:+.1f}, {high:+.1f}] | '
                     f'{"yes" if low <= 0 <= high else "no"} |')
    return lines


def chosen_note(results: dict) -> str:
    """What the validation split chose: the layer sets, and the knobs of the methods that had candidates."""
    knobs = {m: list(grid) for m, grid in results.get('knob_candidates', {}).items()}
    search = ' (one knob at a time from the defaults)' if knobs and results['knob_search'] == 'one-at-a-time' else ''
    return 'Layer sets' + ''.join(f', {m}\'s {", ".join(k)}' for m, k in knobs.items()) + search


def write_report(results: dict, out_dir: str):
    os.makedirs(out_dir, exist_ok=True)
    all_rows = [r for r in results['rows'] if 'error' not in r]
    rows = [r for r in all_rows if r.get('split', 'test') == 'test']
    base = next((r for r in rows if r['method'] is None), None)
    if base is None:
        raise ValueError('no report: the results hold no finished unreduced run (interrupted before the first run '
                         'ended); run the comparison again')
    metric = results['metric']
    val_note = (f' {chosen_note(results)} chosen on {results["val_images"]} validation images (other images), '
                'reported on test.' if results.get('val_images') else '')
    lines = [f'# Token reducers compared: {results["config"]}', '', *completeness(results),
             f'Checkpoint `{results["checkpoint"]}`, {results["images"]} test images; `{metric}` from the config\'s '
             'evaluator with its 95 % bootstrap interval over the test images; backbone GFLOPs per image as run '
             '(one scan direction, reduction overhead included). Per column: best in bold; ≈ marks a method whose '
             f'paired bootstrap difference to the best includes 0 (within noise).{val_note}', '',
             f'Unreduced: {metric} {base["metrics"][metric]:.2f}' +
             (f' [{base["interval"][0]:.1f}, {base["interval"][1]:.1f}]' if base.get('interval') else '') +
             f' at {base["gflops"]:.3f} GFLOPs.']
    for (restore, table_name), table in groups(rows).items():
        title = table_name + (f', restoration `{restore}`' if restore else '')
        marks = best_and_ties(table, metric)
        chosen = table_name.startswith('each method')
        lines += ['', f'## {title}: {metric} (GFLOPs)', '']
        lines += method_table(table, lambda r: cell_text(r, metric, marks.get(id(r)), chosen))
    lines += chosen_vs_shared_lines(rows, metric)
    lines += selection_lines(all_rows, metric)
    others = [k for k in base['metrics'] if k != metric]
    lines += ['', '## Every run', '', f'| run | FLOPs reduction | GFLOPs | {metric} | Δ | ' + ' | '.join(others) + ' |',
              '|---' * (5 + len(others)) + '|']
    for r in {r['name']: r for r in rows}.values():  # a run shared by two tables once
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
    for ax, ((restore, table_name), table) in zip(axes[0], tables.items()):
        for method in dict.fromkeys(r['method'] for r in table):
            points = sorted((r['gflops'], r['metrics'][metric]) for r in table if r['method'] == method)
            ax.plot(*zip(*points), 'o-', label=method)
        ax.plot(base['gflops'], base['metrics'][metric], 'k*', markersize=12, label='unreduced')
        ax.set_title(table_name + (f'\nrestoration: {restore}' if restore else ''), fontsize=9)
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
    layer_sets = args.layers or [configured.get('schedule', {}).get('layers') or shipped_layers(dense)]
    restores = (args.restores or [configured.get('restore', 'unmerge')]) if dense else [None]
    if args.restores and not dense:
        raise ValueError('--restores applies to dense (segmentation / detection) models; this config classifies')
    val_runner = build_runner(val_config(cfg), args.checkpoint, osp.join(args.out_dir, 'val')) \
        if args.select_on else None
    runner = build_runner(cfg, args.checkpoint, args.out_dir)
    kept = keep_per_image_results(runner)
    # The plan is recorded before the runs (with --select-on, once val has chosen the layer sets): a report
    # rebuilt after an interrupt can say which runs it lacks.
    specs = None if args.select_on else run_specs(args.methods, args.targets, layer_sets, restores)
    results = dict(config=args.config, checkpoint=args.checkpoint, images=len(runner.test_dataloader.dataset),
                   metric=None, plan=specs and [spec['name'] for spec in specs], rows=[])
    os.makedirs(args.out_dir, exist_ok=True)
    base = evaluate_run(runner, run_specs([], [], [], [])[0], kept, args.metric)
    metric = results['metric'] = headline_metric(base['metrics'], args.metric)
    summary = lambda r: f'{metric} {r["metrics"][metric]:7.2f}  {r["gflops"]:.3f} GFLOPs'  # noqa: E731
    record_run(results, base, args.out_dir, summary)
    if args.select_on:
        results.update(val_images=len(val_runner.test_dataloader.dataset), knob_candidates=args.knob_candidates,
                       knob_search=args.knob_search, chosen=[])
        chosen = select_on_val(val_runner, args, layer_sets, restores, results, metric)
        specs = test_specs(args, layer_sets, restores, chosen)
        results['plan'] = [spec['name'] for spec in specs]
    done = {}
    for spec in specs[1:]:
        name = spec['name']  # method, target, layer set, restoration and knobs
        row = dict(done[name], table=spec['table']) if name in done else evaluate_run(runner, spec, kept, metric)
        done[name] = row
        record_run(results, row, args.out_dir, summary)
    write_report(results, args.out_dir)


if __name__ == '__main__':
    cli.run(main)
