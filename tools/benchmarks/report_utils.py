"""What the benchmark scripts share for their reports: rebuilding from a results json and the plots."""
import json


def rebuild_report(args, write_report) -> bool:
    """``--report-only RESULTS.json``: rebuild the markdown + plot into ``--out-dir``; True if done."""
    if not args.report_only:
        return False
    with open(args.report_only) as f:
        write_report(json.load(f), args.out_dir)
    return True


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
