"""tools/benchmarks/reduction_traffic.py: the ops and bytes of one reduction step, and the property it
guards: a merging step gathers the survivors first instead of rewriting the whole sequence several times."""
import json
from functools import partial

from script_runner import run_script

run_traffic = partial(run_script, 'tools/benchmarks/reduction_traffic.py')


def test_merging_steps_write_a_few_sequences_not_many(tmp_path):
    run_traffic('--batch', '2', '--length', '50', '--channels', '32', '--r', '10', '--methods', 'mtr', 'tome', 'random',
                '--dtypes', 'fp32', 'bf16', '--out-dir', tmp_path)
    results = json.loads((tmp_path / 'traffic.json').read_text())
    sequence_mib = 2 * 50 * 32 * 4 / 2 ** 20  # one (B, L, C) fp32 tensor
    rows = {(r['method'], r['dtype']): r for r in results['rows']}
    assert len(rows) == 6 and all(r['ops'] > 10 for r in rows.values())
    # Merging into the full sequence and gathering afterwards wrote 15.6 (MTR) / 16.4 (ToMe) sequences here.
    for method in ('mtr', 'tome'):
        for dtype in ('float32', 'bfloat16'):
            assert rows[method, dtype]['mib_written'] / sequence_mib < 9
    # pruning only gathers the survivors of the two streams: less than any merge
    assert rows['random', 'float32']['mib_written'] < rows['mtr', 'float32']['mib_written']
    again = tmp_path / 'again'
    run_traffic('--report-only', tmp_path / 'traffic.json', '--out-dir', again)
    assert (again / 'traffic.md').read_text() == (tmp_path / 'traffic.md').read_text()
