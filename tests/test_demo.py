"""The README's first command: the embedded demo runs and prints its side-by-side table."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_demo_prints_table_and_writes_pictures(capsys):
    from tools.demo import WORK_DIR, main
    main()
    out = capsys.readouterr().out
    row = r' +(\d+\.\d+) +(\d+\.\d+) +(\d+\.\d+) +(\d+)%$'
    unreduced, mtr = (re.search(f'^{name}{row}', out, re.M) for name in ('unreduced', 'MTR -40% FLOPs'))
    assert unreduced and mtr, out
    # a ratio with the spread of its rounds, or the statement that the machine was too busy for one
    assert re.search(r'^MTR: 40\.\d% fewer FLOPs, (\d+\.\d\dx images/s \(spread \d+%\)|machine busy: spread \d+%)',
                     out, re.M), out
    assert 'median of 7 interleaved rounds' in out
    assert ' - INFO - ' not in out  # quiet: the runs log at WARNING, the table is what is printed
    assert float(unreduced.group(2)) == 1.449 and float(mtr.group(2)) == 0.868  # the checkpoint's val-chosen MTR
    # the shipped checkpoint really is trained: far above the 10 % of chance without reduction
    assert float(unreduced.group(1)) > 40
    tokens = sorted((Path(WORK_DIR) / 'show' / 'tokens').glob('fashion_*_tokens.png'))
    assert len(tokens) >= 16
    assert (Path(WORK_DIR) / 'bird_tokens.png').exists() and (Path(WORK_DIR) / 'ADE_val_00000001_tokens.png').exists()


def test_demo_videomamba_line():
    from tools.demo import videomamba_line
    assert videomamba_line() == ('VideoMamba-T, one 8-frame view (1569 tokens): 11.54 -> 6.92 GFLOPs with MTR (40.0% '
                                 'fewer; configs/mtr_videomamba_k400.py, docs/videomamba.md)')
