"""tools/benchmarks/time_breakdown.py on the CPU (the GPU replays the same parts as CUDA graphs): every
block timed at the token count the schedule gives it, a reduction step after each reducing layer."""
import json
from functools import partial
from itertools import accumulate

import pytest

from mtr_mm.models import VisionMamba, vim_arch
from script_runner import run_script

run_breakdown = partial(run_script, 'tools/benchmarks/time_breakdown.py')


def test_blocks_and_steps_of_a_reduced_forward(tmp_path):
    layers = [6, 9, 12, 15, 18]
    run_breakdown('--device', 'cpu', '--archs', 'tiny', '--batch', '1', '--runs', 'mtr@0.4', '--iters', '1',
                  '--layers', *map(str, layers), '--profile', '--out-dir', tmp_path)
    results = json.loads((tmp_path / 'breakdown.json').read_text())
    rows = {r['run']: r for r in results['rows']}
    assert set(rows) == {'none', 'mtr@0.4'}
    assert [layer['tokens'] for layer in rows['none']['layers']] == [197] * 24
    assert all('reduce_ms' not in layer for layer in rows['none']['layers'])
    schedule = VisionMamba(**vim_arch('tiny'), reduction=dict(
        method='mtr', schedule=dict(layers=layers, flops_reduction=0.4))).removed_per_layer((14, 14))
    before_block = [197] + [197 - n for n in accumulate(schedule)][:-1]
    reduced = rows['mtr@0.4']['layers']
    assert [layer['tokens'] for layer in reduced] == before_block and before_block[-1] < 197
    assert [layer['layer'] for layer in reduced if 'reduce_ms' in layer] == layers
    assert all(layer['reduce_ms'] > 0 and layer['removed'] == schedule[layer['layer']] for layer in reduced
               if 'reduce_ms' in layer)
    profiled = [layer for layer in reduced if 'ops' in layer]  # --profile: the first step's ops by their time
    assert [layer['layer'] for layer in profiled] == layers[:1] and profiled[0]['ops'][0]['us'] > 0
    assert [op['us'] for op in profiled[0]['ops']] == sorted((op['us'] for op in profiled[0]['ops']), reverse=True)
    for row in rows.values():
        assert row['blocks_ms'] == pytest.approx(sum(layer['ms'] for layer in row['layers']))
        assert row['forward_ms'] > 0
    again = tmp_path / 'again'
    run_breakdown('--report-only', tmp_path / 'breakdown.json', '--out-dir', again)
    assert (again / 'breakdown.md').read_text() == (tmp_path / 'breakdown.md').read_text()


def test_runs_must_be_reductions(tmp_path):
    done = run_breakdown('--device', 'cpu', '--runs', 'mtr@0.4+graph', '--out-dir', tmp_path, check=False)
    assert done.returncode == 2 and 'METHOD@FLOPS_REDUCTION' in done.stderr
