"""tools/analysis/learning_curve.py: the calls of one run joined by iteration, a later call's rows winning,
and bad inputs named."""
import json

from script_runner import run_script


def write_scalars(path, rows):
    path.write_text(''.join(json.dumps(row) + '\n' for row in rows))
    return path


def test_calls_are_joined_by_iteration(tmp_path):
    first = write_scalars(tmp_path / 'call1.json', [
        dict(step=10, loss=2.3, lr=1e-4), dict(step=20, loss=2.0, lr=2e-4), {'accuracy/top1': 30.0, 'step': 20},
        dict(step=30, loss=9.9, lr=3e-4)])  # cut off before its checkpoint: redone by the next call
    second = write_scalars(tmp_path / 'call2.json', [
        dict(step=30, loss=1.5, lr=3e-4), dict(step=40, loss=1.0, lr=1e-4), {'accuracy/top1': 60.0, 'step': 40}])
    run_script('tools/analysis/learning_curve.py', first, second, '--out-dir', tmp_path / 'out', '--title', 'run')
    curve = json.loads((tmp_path / 'out' / 'curve.json').read_text())
    assert curve['metric'] == 'accuracy/top1'
    assert curve['val'] == [[20, 30.0], [40, 60.0]]
    assert [step for step, *_ in curve['train']] == [10, 20, 30, 40] and curve['train'][2][1] == 1.5
    table = (tmp_path / 'out' / 'curve.md').read_text()
    assert '| 20 | 30.00 | 2.1500 | 0.0002 |' in table  # loss: mean of the logs up to the validation
    assert '| 40 | 60.00 | 1.7000 | 0.0001 |' in table   # (2.3 + 2.0 + 1.5 + 1.0) / 4, not 9.9
    assert (tmp_path / 'out' / 'curve.png').stat().st_size > 0


def test_bad_inputs_are_named(tmp_path):
    text = write_scalars(tmp_path / 'log.txt', [])
    text.write_text('12/03 13:28:13 - mmengine - INFO - Iter(val)\n')
    done = run_script('tools/analysis/learning_curve.py', text, '--out-dir', tmp_path, check=False)
    assert done.returncode == 1 and 'log.txt:1 is not a JSON line' in done.stderr
    no_val = write_scalars(tmp_path / 'train_only.json', [dict(step=1, loss=2.0)])
    done = run_script('tools/analysis/learning_curve.py', no_val, '--out-dir', tmp_path, check=False)
    assert done.returncode == 1 and 'no validation rows' in done.stderr
    done = run_script('tools/analysis/learning_curve.py', tmp_path / 'missing.json', '--out-dir', tmp_path, check=False)
    assert done.returncode == 1 and 'missing.json does not exist' in done.stderr
