"""tools/benchmarks/bench_scan.py on the CPU: several batches and lengths in one call, the model's
operand layout, one report per shape."""
import json

from script_runner import run_script


def test_tables_per_batch_and_length_in_the_model_layout(tmp_path):
    run_script('tools/benchmarks/bench_scan.py', '--batch', '2', '1', '--dim', '8', '--state', '4',
               '--length', '5', '9', '--layout', 'model', '--warmup', '1', '--repeats', '2', '--out-dir', tmp_path)
    for batch in (2, 1):
        for length in (5, 9):
            name = tmp_path / f'scan_b{batch}_e8_n4_l{length}_fp32_cpu_model'
            report = json.loads(name.with_suffix('.json').read_text())
            assert report['config']['batch'] == batch and report['config']['length'] == length
            rows = {r['name']: r for r in report['results']}
            assert rows['loop, precomputed (reference)']['speedup'] == 1
            assert rows['chunked torch (T=8)']['max_rel_err'] < 1e-5
            assert f'--batch {batch} ' in name.with_suffix('.md').read_text()
