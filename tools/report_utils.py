"""What the benchmark and analysis scripts share: layer-set arguments, recording runs, rebuilding a
report from its results json, tables and plots."""
import json
import os.path as osp

REDUCTION_BASES = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'configs', '_base_', 'reductions')
SHIPPED_REDUCTION = osp.join(REDUCTION_BASES, 'mtr.py')              # classification (images, video)
SHIPPED_DENSE_REDUCTION = osp.join(REDUCTION_BASES, 'mtr_dense.py')  # segmentation, detection


def shipped_layers(dense: bool = False) -> list:
    """The reducing layers of the shipped MTR configs, classification or dense (segmentation and
    detection), read from their base config (the one source; each chosen on its task's validation split)."""
    from mmengine.config import Config
    base = Config.fromfile(SHIPPED_DENSE_REDUCTION if dense else SHIPPED_REDUCTION)
    return list(base.reduction['schedule']['layers'])


def layer_list(text: str) -> list:
    """argparse type of a layer set written as a comma list: '6,9,12' -> [6, 9, 12]."""
    return [int(i) for i in text.split(',')]


def record_run(results: dict, row: dict, out_dir: str, summary):
    """Append a run to ``results``, print it (``summary(row)``, or its error), and rewrite
    results.json, so that partial results survive a time-out."""
    results['rows'].append(row)
    print(f'{row["name"]:40} ' + (row['error'] if 'error' in row else summary(row)), flush=True)
    with open(osp.join(out_dir, 'results.json'), 'w') as f:
        json.dump(results, f, indent=1)


def rebuild_report(args, write_report) -> bool:
    """``--report-only RESULTS.json``: rebuild the markdown + plot into ``--out-dir``; True if done."""
    if not args.report_only:
        return False
    with open(args.report_only) as f:
        write_report(json.load(f), args.out_dir)
    return True


def method_table(rows: list, cell) -> list:
    """Markdown lines of a methods x FLOPs-targets table; ``cell(row)`` gives each cell's text."""
    targets = sorted({r['target'] for r in rows})
    lines = ['| method | ' + ' | '.join(f'-{t:.0%} FLOPs' for t in targets) + ' |', '|---' * (len(targets) + 1) + '|']
    for method in dict.fromkeys(r['method'] for r in rows):
        cells = {r['target']: cell(r) for r in rows if r['method'] == method}
        lines.append(f'| {method} | ' + ' | '.join(cells.get(t, 'n/a') for t in targets) + ' |')
    return lines


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend; None without matplotlib (the reports then
    skip their plot and keep the markdown)."""
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    return plt


def save_figure(fig, path: str):
    import matplotlib.pyplot as plt
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
