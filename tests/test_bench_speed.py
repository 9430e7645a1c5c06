"""tools/benchmarks/bench_speed.py on the CPU (the H200 runs the same code with CUDA events): one
timed round of a small Vim, the rows it reports, and the report rebuilt from its json."""
import json
from functools import partial

import pytest

from mtr_mm.models import VisionMamba, vim_arch
from script_runner import run_script

run_bench = partial(run_script, 'tools/benchmarks/bench_speed.py')


def test_speed_rows_on_cpu(tmp_path):
    run_bench('--device', 'cpu', '--archs', 'tiny', '--batch', '1', '--dtypes', 'fp32', '--runs',
              'none,mtr@0.4,hsa@0.4,mtr@0.4+graph', '--layers', '6', '9', '12', '15', '18', '--rounds', '1', '--iters', '1',
              '--scan-kernel', 'auto', '--out-dir', tmp_path)
    results = json.loads((tmp_path / 'speed.json').read_text())
    assert results['layers'] == [6, 9, 12, 15, 18] and results['device'] == 'cpu' and results['scan_kernel'] == 'auto'
    rows = {r['run']: r for r in results['rows']}
    assert set(rows) == {'none', 'mtr@0.4', 'hsa@0.4', 'mtr@0.4+graph'}
    unreduced = VisionMamba(**vim_arch('tiny'), reduction=None).flops((14, 14)).total / 1e9
    assert rows['none']['gflops'] == pytest.approx(unreduced) and rows['none']['vs_none'] == 1
    for run in ('mtr@0.4', 'hsa@0.4'):
        assert 1 - rows[run]['gflops'] / unreduced == pytest.approx(0.4, abs=0.01)
        assert rows[run]['images_per_s'] > 0 and 0 < rows[run]['overhead_share'] < 1
        assert rows[run]['eager_overhead_share'] == rows[run]['overhead_share']  # off the GPU, one eager time
    assert rows['none']['overhead_share'] == 0
    # the CUDA-graph switch changes nothing off the GPU: the same FLOPs, an eager forward
    assert rows['mtr@0.4+graph']['gflops'] == rows['mtr@0.4']['gflops']
    again = tmp_path / 'again'
    run_bench('--report-only', tmp_path / 'speed.json', '--out-dir', again)
    assert (again / 'speed.md').read_text() == (tmp_path / 'speed.md').read_text()


def test_dense_backbone_rows_and_argument_errors(tmp_path):
    run_bench('--device', 'cpu', '--archs', 'tiny', '--batch', '1', '--dtypes', 'fp32', '--dense', '96',
              '--runs', 'none,mtr@0.3/stale', '--layers', '4', '8', '--rounds', '1', '--iters', '1', '--warmup', '1',
              '--out-dir', tmp_path)
    results = json.loads((tmp_path / 'speed.json').read_text())
    rows = {r['run']: r for r in results['rows']}
    assert results['dense'] == 96 and rows['mtr@0.3/stale']['gflops'] < rows['none']['gflops']
    assert 'dense backbone at 96x96' in (tmp_path / 'speed.md').read_text()
    for argv, message in ((['--runs', 'official,none'], "run 'official' needs --official PATH"),
                          (['--official', str(tmp_path)], 'not a checkout of github.com/hustvl/Vim'),
                          (['--dense', '512', '--official', str(tmp_path)], 'the official code has no such forward'),
                          (['--config', 'configs/vim_seg/vim_tiny_upernet_ade20k_512.py'], 'give its input size')):
        result = run_bench('--device', 'cpu', *argv, '--out-dir', tmp_path / 'x', check=False)
        assert result.returncode != 0 and message in result.stderr


def test_video_rows_on_cpu(tmp_path):
    """VideoMamba video models at a frame count (--frames), beside an image size in the same run."""
    run_bench('--device', 'cpu', '--archs', 'videomamba_tiny', '--frames', '2', '--batch', '1', '--dtypes', 'fp32',
              '--runs', 'none,mtr@0.4', '--rounds', '1', '--iters', '1', '--warmup', '1', '--out-dir', tmp_path)
    results = json.loads((tmp_path / 'speed.json').read_text())
    rows = {r['run']: r for r in results['rows']}
    assert results['frames'] == [2] and {r['frames'] for r in rows.values()} == {2}
    video = VisionMamba(**vim_arch('videomamba_tiny', num_frames=2)).flops((2, 14, 14)).total / 1e9
    assert rows['none']['gflops'] == pytest.approx(video)
    assert 1 - rows['mtr@0.4']['gflops'] / video == pytest.approx(0.4, abs=0.01)
    assert '| videomamba_tiny 2f | fp32 | mtr@0.4 |' in (tmp_path / 'speed.md').read_text()
    result = run_bench('--device', 'cpu', '--archs', 'tiny', '--frames', '8', '--out-dir', tmp_path / 'x', check=False)
    assert result.returncode != 0 and '--frames times VideoMamba video models' in result.stderr


def test_whole_segmentation_model_rows(tmp_path):
    """--config times backbone + neck + decode head of a config; its backbone FLOPs are the bare backbone's."""
    common = ('--device', 'cpu', '--batch', '1', '--dtypes', 'fp32', '--dense', '64', '--runs', 'none,mtr@0.3',
              '--layers', '4', '8', '--rounds', '3', '--iters', '1', '--warmup', '1')
    run_bench(*common, '--config', 'configs/vim_seg/vim_tiny_upernet_ade20k_512.py', '--out-dir', tmp_path / 'whole')
    run_bench(*common, '--archs', 'tiny', '--out-dir', tmp_path / 'backbone')
    whole, backbone = ({r['run']: r for r in json.loads((tmp_path / d / 'speed.json').read_text())['rows']}
                       for d in ('whole', 'backbone'))
    assert whole['none']['arch'] == 'tiny'
    for run in ('none', 'mtr@0.3'):
        assert whole[run]['gflops'] == backbone[run]['gflops']
    assert 'vim_tiny_upernet_ade20k_512.py (backbone + neck + decode head) at 64x64' in \
        (tmp_path / 'whole' / 'speed.md').read_text()


def test_default_layers_are_the_shipped_ones_of_the_task(tmp_path):
    """No --layers: the shipped MTR set of the timed task (classification, or with --dense the dense one)."""
    from tools.benchmarks.bench_speed import parse_args
    from tools.report_utils import shipped_layers
    assert parse_args(['--out-dir', str(tmp_path)]).layers == shipped_layers() == [5, 9, 13, 17, 21]
    assert parse_args(['--dense', '512', '--out-dir', str(tmp_path)]).layers == shipped_layers(dense=True) \
        == [4, 8, 12, 16, 20]
