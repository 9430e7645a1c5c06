"""Learning curve of a training run that spans several calls: mmengine's ``vis_data/scalars.json`` of
each call (train rows carry ``loss``; validation rows carry the metric) joined by iteration, written as
a report (markdown table, PNG, JSON).

    python tools/analysis/learning_curve.py work_dirs/vim_t/*/vis_data/scalars.json --out-dir OUT \
        [--metric accuracy/top1] [--title TEXT]

A later call's row for an iteration replaces an earlier one's (a resumed call repeats none, but a call
cut off before its checkpoint is redone by the next)."""
import argparse
import json
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))
from tools.cli import run  # noqa: E402
from tools.report_utils import pyplot, save_figure  # noqa: E402

METRICS = ('accuracy/top1', 'mIoU', 'coco/bbox_mAP', 'coco/segm_mAP')


def read_rows(paths):
    """Train rows {step: row} and validation rows {step: row}, later files winning."""
    train, val = {}, {}
    for path in paths:
        with open(path) as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as err:
                    raise ValueError(f'{path}:{number} is not a JSON line ({err}): pass mmengine vis_data/scalars.json files')
                if 'step' not in row:
                    raise ValueError(f'{path}:{number} has no "step": pass mmengine vis_data/scalars.json files')
                (train if 'loss' in row else val)[row['step']] = row
    return dict(sorted(train.items())), dict(sorted(val.items()))


def pick_metric(val: dict, metric):
    if metric:
        return metric
    names = {key for row in val.values() for key in row}
    return next((m for m in METRICS if m in names), None)


def write_report(curve: dict, out_dir: str):
    os.makedirs(out_dir, exist_ok=True)
    with open(osp.join(out_dir, 'curve.json'), 'w') as f:
        json.dump(curve, f, indent=1)
    metric, val, train = curve['metric'], curve['val'], curve['train']
    lines = [f'# {curve["title"]}', '', f'Validation {metric} by iteration:', '',
             f'| iteration | {metric} | train loss (mean of the last 5 logs) | lr |', '|---:|---:|---:|---:|']
    for step, value in val:
        recent = [loss for s, loss, _ in train if s <= step][-5:]
        lr = next((lr for s, _, lr in reversed(train) if s <= step), float('nan'))
        mean = sum(recent) / len(recent) if recent else float('nan')
        lines.append(f'| {step} | {value:.2f} | {mean:.4f} | {lr:.3g} |')
    if train:
        lines += ['', f'Train loss logged at {len(train)} iterations, {train[0][0]}–{train[-1][0]}; '
                  f'last {train[-1][1]:.4f}.']
    lines += ['', f'Sources: {", ".join(osp.basename(s) for s in curve["sources"])}']
    with open(osp.join(out_dir, 'curve.md'), 'w') as f:
        f.write('\n'.join(lines) + '\n')
    print('\n'.join(lines))
    plt = pyplot()
    if plt is None:
        return
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    left.plot([s for s, _, _ in train], [loss for _, loss, _ in train], lw=1)
    left.set(xlabel='iteration', ylabel='train loss', title='train loss')
    right.plot([s for s, _ in val], [v for _, v in val], 'o-')
    right.set(xlabel='iteration', ylabel=metric, title=f'validation {metric}')
    fig.suptitle(curve['title'], fontsize=10)
    save_figure(fig, osp.join(out_dir, 'curve.png'))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('scalars', nargs='+', help="mmengine vis_data/scalars.json files, one per call, in order")
    parser.add_argument('--out-dir', required=True)
    parser.add_argument('--metric', help=f'validation metric (default: the first of {", ".join(METRICS)} found)')
    parser.add_argument('--title', default='learning curve')
    args = parser.parse_args()
    for path in args.scalars:
        if not osp.isfile(path):
            raise FileNotFoundError(f'{path} does not exist: pass the vis_data/scalars.json of each training call')
    train, val = read_rows(args.scalars)
    metric = pick_metric(val, args.metric)
    if metric is None or not any(metric in row for row in val.values()):
        raise ValueError(f'no validation rows with {args.metric or "any of " + ", ".join(METRICS)} in {args.scalars}')
    write_report(dict(title=args.title, metric=metric, sources=args.scalars,
                      train=[(s, row['loss'], row.get('lr', float('nan'))) for s, row in train.items()],
                      val=[(s, row[metric]) for s, row in val.items() if metric in row]), args.out_dir)


if __name__ == '__main__':
    run(main)
