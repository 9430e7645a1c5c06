"""tools/analysis/compare_reductions.py on the shipped demo model (a real trained Vim-T, 48 real test
images): the runner's top-1 for each reduction equals an independent plain loop over the images
with a model built for that reduction; bad requests fail with what to do."""
import json
from functools import partial

import numpy as np
import pytest
import torch
from PIL import Image

from mtr_mm.apis import init_model
from script_runner import run_script
from shared_paths import REPO
from tools.demo import join_checkpoint

CONFIG = 'configs/demo/mtr_vim_tiny_fashion.py'
DATA = REPO / 'demo' / 'data' / 'fashion_cls'


run_tool = partial(run_script, 'tools/analysis/compare_reductions.py', check=False, timeout=600)


def plain_top1(checkpoint, reduction, meta=DATA / 'meta' / 'test.txt') -> float:
    """Top-1 (%) by a loop over the image files listed in ``meta``: the model built with ``reduction``
    from the start."""
    model = init_model(str(REPO / CONFIG), checkpoint, cfg_options={'model.backbone.reduction': reduction})
    mean = torch.tensor([123.675, 116.28, 103.53])[:, None, None]
    std = torch.tensor([58.395, 57.12, 57.375])[:, None, None]
    correct, lines = 0, meta.read_text().split('\n')
    lines = [line.split() for line in lines if line]
    with torch.no_grad():
        for name, label in lines:
            image = torch.from_numpy(np.array(Image.open(DATA / 'images' / name).convert('RGB')))
            x = ((image.permute(2, 0, 1).float() - mean) / std)[None]
            correct += int(model(x, mode='tensor').argmax(-1).item() == int(label))
    return 100 * correct / len(lines)


def first_images(folder, count: int) -> list:
    """The first ``count`` demo images as the test list: ``--cfg-options`` pointing the tool at them."""
    lines = (DATA / 'meta' / 'test.txt').read_text().split('\n')[:count]
    (folder / 'first.txt').write_text('\n'.join(lines) + '\n')
    return ['--cfg-options', f'test_dataloader.dataset.ann_file={folder / "first.txt"}']


@pytest.fixture(scope='module')
def compared(tmp_path_factory):
    out = tmp_path_factory.mktemp('compare')
    checkpoint = join_checkpoint()
    done = run_tool(CONFIG, checkpoint, '--methods', 'mtr', '--targets', '0.4', '--layers', '6,9,12,15,18',
                    '4,8,12,16,20', '--out-dir', out, *first_images(out, 16))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return checkpoint, json.loads((out / 'results.json').read_text()), out


def test_top1_equals_a_plain_loop(compared):
    checkpoint, results, out = compared
    rows = {r['name']: r for r in results['rows']}
    assert results['metric'] == 'accuracy/top1' and results['images'] == 16
    assert set(rows) == {'none', 'mtr@0.4 L6,9,12,15,18', 'mtr@0.4 L4,8,12,16,20'}
    top1 = rows['none']['metrics']['accuracy/top1']
    plain = partial(plain_top1, checkpoint, meta=out / 'first.txt')
    assert top1 == pytest.approx(plain(None), abs=1e-4)  # one image = 6.25 points
    for layers in ([6, 9, 12, 15, 18], [4, 8, 12, 16, 20]):
        row = rows[f'mtr@0.4 L{",".join(map(str, layers))}']
        reduction = dict(method='mtr', schedule=dict(layers=layers, flops_reduction=0.4))
        top1 = row['metrics']['accuracy/top1']
        assert top1 == pytest.approx(plain(reduction), abs=1e-4)
        assert 1 - row['gflops'] / rows['none']['gflops'] == pytest.approx(0.4, abs=0.01)
    report = (out / 'results.md').read_text()
    assert '## layers [6, 9, 12, 15, 18]: accuracy/top1 (GFLOPs)' in report


@pytest.mark.parametrize('extra, message', [
    (['--restores', 'zero'], 'applies to dense'),
    (['--metric', 'mIoU'], "--metric 'mIoU' is not among"),
    (['--select-on', 'val'], 'val_dataloader reads the same images as its test_dataloader'),
    (['--layer-candidates', '6,9,12,15,18'], '--layer-candidates and --select-target choose on a split'),
])
def test_bad_requests_fail_clearly(tmp_path, extra, message):
    # a few images where the refusal comes after a run; --select-on's needs val and test to be the same list
    few = [] if '--select-on' in extra else first_images(tmp_path, 4)
    done = run_tool(CONFIG, join_checkpoint(), '--methods', 'mtr', '--targets', '0.4', '--out-dir', tmp_path, *extra,
                    *few)
    assert done.returncode != 0 and message in done.stderr


def split_files(tmp_path, val=6, test=6):
    """Two disjoint lists of the demo images: ``val`` for choosing, then ``test`` for reporting."""
    lines = (DATA / 'meta' / 'test.txt').read_text().split('\n')
    (tmp_path / 'val.txt').write_text('\n'.join(lines[:val]) + '\n')
    (tmp_path / 'test.txt').write_text('\n'.join(lines[val:val + test]) + '\n')
    return ['--cfg-options', f'val_dataloader.dataset.ann_file={tmp_path / "val.txt"}',
            f'test_dataloader.dataset.ann_file={tmp_path / "test.txt"}']


def test_layer_sets_are_chosen_on_val_and_reported_on_test(tmp_path):
    candidates = ['6,9,12,15,18', '4,8,12,16,20']
    done = run_tool(CONFIG, join_checkpoint(), '--methods', 'mtr', 'random', '--targets', '0.4', '--select-on', 'val',
                    '--layer-candidates', *candidates, '--out-dir', tmp_path, *split_files(tmp_path))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads((tmp_path / 'results.json').read_text())
    assert results['images'] == 6 and results['val_images'] == 6
    val = [r for r in results['rows'] if r.get('split') == 'val']
    test = [r for r in results['rows'] if r.get('split', 'test') == 'test' and r['method'] is not None]
    assert {(r['method'], ','.join(map(str, r['layers']))) for r in val} == {
        (m, c) for m in ('mtr', 'random') for c in candidates}
    metric = results['metric']
    for method in ('mtr', 'random'):
        runs = [r for r in val if r['method'] == method]
        best = max(runs, key=lambda r: r['metrics'][metric])  # first maximum: the earlier candidate
        own = [r for r in test if r['method'] == method and r['table'].startswith('each method')]
        assert len(own) == 1 and own[0]['layers'] == best['layers']
        shared = [r for r in test if r['method'] == method and r['table'].startswith('shared')]
        assert len(shared) == 1 and shared[0]['layers'] == [5, 9, 13, 17, 21]  # the config's (shipped) set
        low, high = shared[0]['interval']
        assert low <= shared[0]['metrics'][metric] <= high and len(shared[0]['bootstrap']) == 1000
    report = (tmp_path / 'results.md').read_text()
    assert '## shared layer set [5, 9, 13, 17, 21]' in report and '## each method at its own val-chosen layer set' in report
    assert '## Chosen on the validation split' in report


def test_knobs_are_chosen_on_val_and_the_choice_is_run_on_test(tmp_path):
    """5 val images, 7 test images: every val run's top-1 is a plain loop's over the val images (not
    the test ones), the val best's knobs are the ones reported (and run) on test."""
    # both keep_ratio candidates differ from the default 0.75: whichever wins, its run differs from the default's
    checkpoint, grid = join_checkpoint(), ['mtr.keep_ratio=0.25,0.5', 'mtr.similarity=block']
    done = run_tool(CONFIG, checkpoint, '--methods', 'mtr', '--targets', '0.4', '--select-on', 'val',
                    '--knob-candidates', *grid, '--out-dir', tmp_path, *split_files(tmp_path, val=5, test=7))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads((tmp_path / 'results.json').read_text())
    metric, layers = results['metric'], [5, 9, 13, 17, 21]  # no --layers: the config's (shipped) set
    assert results['images'] == 7 and results['val_images'] == 5
    assert results['knob_candidates'] == {'mtr': {'keep_ratio': [0.25, 0.5], 'similarity': ['block']}}
    val = [r for r in results['rows'] if r.get('split') == 'val']
    assert [r['knobs'] for r in val] == [dict(keep_ratio=0.25, similarity='block'),
                                         dict(keep_ratio=0.5, similarity='block')]

    def reduction(knobs):
        return dict(method=dict(type='mtr', **knobs), schedule=dict(layers=layers, flops_reduction=0.4))
    for r in val:
        assert r['metrics'][metric] == pytest.approx(plain_top1(checkpoint, reduction(r['knobs']),
                                                                tmp_path / 'val.txt'), abs=1e-4)
    best = max(val, key=lambda r: r['metrics'][metric])  # first maximum: the earlier candidate
    assert results['chosen'] == [dict(restore=None, method='mtr', target=0.4, chosen_on='val', layers=layers,
                                      knobs=best['knobs'], val_metric=best['metrics'][metric])]
    test = {r['table']: r for r in results['rows'] if r.get('split', 'test') == 'test' and r['method']}
    assert set(test) == {'shared layer set [5, 9, 13, 17, 21], default knobs',
                         'each method at its own val-chosen layer set and knobs'}
    default, own = test['shared layer set [5, 9, 13, 17, 21], default knobs'], test[
        'each method at its own val-chosen layer set and knobs']
    assert default['knobs'] == {} and own['knobs'] == best['knobs'] and own['gflops'] != default['gflops']
    assert own['metrics'][metric] == pytest.approx(plain_top1(checkpoint, reduction(best['knobs']),
                                                              tmp_path / 'test.txt'), abs=1e-4)
    report = (tmp_path / 'results.md').read_text()
    assert "Layer sets, mtr's keep_ratio, similarity chosen on 5 validation images" in report
    assert '| mtr | -40% | - | keep_ratio=0.25 similarity=block | ' in report
    assert '## Val-chosen minus shared on test: accuracy/top1, paired 95 % bootstrap interval' in report


@pytest.mark.parametrize('extra, message', [
    (['mtr.keep_ratio=0.25'], '--knob-candidates choose on a split: add --select-on val'),
    (['mtr.ratio=0.25', '--select-on', 'val'], "--knob-candidates mtr.ratio=0.25: reducer 'mtr' has no knob ratio; "
                                                "its knobs: ['keep_ratio', 'similarity', 'merge_weights', "
                                                "'delta_activation']"),
    (['mtr.keep_ratio=0.5,1.5', '--select-on', 'val'],
     '--knob-candidates mtr.keep_ratio=1.5: mtr: keep_ratio must be a number in [0, 1)'),
    (['mtr.similarity=hidden,cosine', '--select-on', 'val'], "--knob-candidates mtr.similarity='cosine': mtr"),
    (['tome.keep_ratio=0.5', '--methods', 'mtr', 'tome', '--select-on', 'val'],
     "--knob-candidates tome.keep_ratio=0.5: reducer 'tome' has no knob keep_ratio; its knobs: none"),
    (['tome.keep_ratio=0.5', '--select-on', 'val'],
     "--knob-candidates tome.keep_ratio: 'tome' is not among the compared methods ['mtr']"),
    (['mtr.keep_ratio=0.5', 'mtr.keep_ratio=0.25', '--select-on', 'val'], 'mtr.keep_ratio is given twice'),
    (['mtr.keep_ratio', '--select-on', 'val'], "'mtr.keep_ratio' is not METHOD.KNOB=V1,V2,..."),
])
def test_bad_knob_candidates_fail_before_any_run(capsys, tmp_path, extra, message):
    """Refused by the argument parser, before a config is read or a model built (the checkpoint
    named here does not exist)."""
    from tools.analysis.compare_reductions import parse_args
    with pytest.raises(SystemExit):
        parse_args([CONFIG, 'no.pth', '--out-dir', str(tmp_path), '--methods', 'mtr', '--knob-candidates', *extra])
    assert message in capsys.readouterr().err


def test_paired_bootstrap_marks_methods_within_noise():
    from tools.analysis.compare_reductions import best_and_ties, interval

    def row(method, value, samples):
        return dict(method=method, target=0.4, metrics={'m': value}, bootstrap=samples)

    best = row('a', 50.0, [48.0, 50.0, 52.0, 51.0])
    close = row('b', 49.0, [49.0, 51.0, 47.0, 48.0])       # differences 1, -1, 5, 3: 0 inside
    far = row('c', 30.0, [29.0, 30.0, 31.0, 30.0])         # always 18+ below
    marks = best_and_ties([best, close, far], 'm')
    assert marks == {id(best): 'best', id(close): 'tie'}
    assert interval(list(range(101))) == [2.5, 97.5]


def test_val_choice_is_compared_with_the_shared_run_on_the_same_resamples():
    from tools.analysis.compare_reductions import chosen_vs_shared_lines

    def row(name, table, value, samples):
        return dict(name=name, table=table, method='mtr', target=0.3, restore=None, layers=[6], metrics={'m': value},
                    bootstrap=samples)

    shared, own = 'shared layer set [6, 9, 12, 15, 18], default knobs', 'each method at its own val-chosen layer set'
    old = row('mtr@0.3', shared, 50.0, [50.0, 48.0, 52.0, 50.0])
    close = row('mtr@0.3 keep_ratio=0.25', own, 51.0, [49.0, 50.0, 53.0, 52.0])   # differences -1, 2, 1, 2
    lines = chosen_vs_shared_lines([old, close], 'm')
    assert lines[-1].startswith('| mtr | -30% | - | 50.00 | 51.00 | +1.00 [-0.8') and lines[-1].endswith('| yes |')
    far = row('mtr@0.3 keep_ratio=0.75', own, 60.0, [60.0, 59.0, 62.0, 61.0])      # always 9+ above
    assert chosen_vs_shared_lines([old, far], 'm')[-1].endswith('| no |')
    assert chosen_vs_shared_lines([old, dict(old, table=own)], 'm') == []  # the same run in both tables


def test_knob_search_grid_and_one_at_a_time():
    from tools.analysis.compare_reductions import knob_combinations
    grid = {'mtr': {'keep_ratio': [0.25, 0.5], 'merge_weights': ['size', 'mean']}, 'random': {'seed': [0, 1, 2]}}
    assert knob_combinations(grid, 'mtr') == [dict(keep_ratio=0.25, merge_weights='size'),
                                              dict(keep_ratio=0.25, merge_weights='mean'),
                                              dict(keep_ratio=0.5, merge_weights='size'),
                                              dict(keep_ratio=0.5, merge_weights='mean')]
    # the reducer's defaults first (a tie keeps them), then one knob at a time at its other candidates
    assert knob_combinations(grid, 'random', 'one-at-a-time') == [{}, dict(seed=1), dict(seed=2)]  # seed=0: default
    assert knob_combinations(grid, 'evit') == knob_combinations(grid, 'evit', 'one-at-a-time') == [{}]
