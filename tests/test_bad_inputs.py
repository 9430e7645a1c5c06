"""Bad and hostile inputs through the tools' real entry points (docs/reliability.md lists them): each
ends in a user error that names the input and the fix (printed by tools/cli.py as its message, no
traceback), never a silent wrong answer. Every case here failed differently before (a traceback, a
truncated value, or a wrong result)."""
import json
import os
import pickle
import shutil
import subprocess
import sys

import pytest
import torch

from reference_vim import official_state_dict, save_official_checkpoint
from script_runner import REPO, cfg_options
from shared_paths import SHARED_DATA
from test_tools_dense import DET, SEG, TINY_BACKBONE
from tools import cli

IMAGENET = SHARED_DATA / 'imagenet_sample'
CLS_CONFIG = 'configs/vim/vim_tiny_in1k.py'
MTR_CLS_CONFIG = 'configs/mtr_vim_cls.py'
DEMO_CONFIG = 'configs/demo/mtr_vim_tiny_fashion.py'
SEG_CONFIG = 'configs/vim_seg/vim_tiny_upernet_ade20k_512.py'
DET_CONFIG = 'configs/vim_det/vim_tiny_cascade_mask_rcnn_coco_lsj.py'
DEPTH = 3
SMALL = {'model.backbone.depth': DEPTH, 'test_dataloader.dataset.data_root': IMAGENET,
         'test_dataloader.num_workers': 0, 'test_dataloader.batch_size': 2}
SMALL_MTR = {**SMALL, 'model.backbone.reduction.schedule.layers': [0, 1]}


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp('ckpt') / 'vim_t_small.pth'
    save_official_checkpoint(path, official_state_dict(depth=DEPTH, seed=3))
    return path


def error_of(capsys, main, *argv) -> str:
    """Run a tool's main on ``argv``: it must stop with a user error (what tools/cli.py prints as a
    message) or an argparse error; returns the message."""
    with pytest.raises((*cli.USER_ERRORS, SystemExit)) as info:
        main([str(a) for a in argv])
    return str(info.value) + capsys.readouterr().err


def run_test_tool(capsys, config, *args, options=None):
    from tools.test import main
    return error_of(capsys, main, REPO / config, *args, *cfg_options(options or SMALL))


# ------------------------------------------------------------------ checkpoints and weights

def test_empty_checkpoint(capsys, tmp_path):
    empty = tmp_path / 'empty.pth'
    empty.touch()
    message = run_test_tool(capsys, CLS_CONFIG, empty, '--work-dir', tmp_path / 'w')
    assert 'empty.pth' in message and 'empty file (0 bytes)' in message


def test_checkpoint_with_nan_weights(capsys, tmp_path):
    state_dict = official_state_dict(depth=DEPTH, seed=3)
    state_dict['layers.1.mixer.in_proj.weight'][0, 0] = float('nan')
    path = tmp_path / 'nan.pth'
    save_official_checkpoint(path, state_dict)
    message = run_test_tool(capsys, CLS_CONFIG, path, '--work-dir', tmp_path / 'w')
    assert 'NaN or inf' in message and 'backbone.vim.layers.1.mixer.in_proj.weight' in message


def test_an_image_given_as_checkpoint(capsys, tmp_path):
    message = run_test_tool(capsys, CLS_CONFIG, IMAGENET / 'val' / 'bird.JPEG', '--work-dir', tmp_path / 'w')
    assert 'bird.JPEG' in message and 'could not be loaded safely' in message


class Payload:
    """A pickle that runs code when loaded (writes a marker file)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, 'w'))


@pytest.mark.parametrize('where', ['model.head.init_cfg', 'model.backbone.init_cfg'])
def test_pretrained_init_cfg_stays_safe_under_the_torch_override(tmp_path, monkeypatch, where):
    """TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 makes torch.load unpickle anything by default; every
    init_cfg checkpoint still goes through the safe loader, so the payload never runs."""
    from mtr_mm.apis import init_model
    from mtr_mm.checkpoint import CheckpointError
    marker, hostile = tmp_path / 'code_ran', tmp_path / 'hostile.pth'
    with open(hostile, 'wb') as f:
        pickle.dump({'state_dict': {'w': Payload(marker)}}, f)
    monkeypatch.setenv('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', '1')
    with pytest.raises(CheckpointError, match='could not be loaded safely'):
        init_model(str(REPO / CLS_CONFIG), cfg_options={'model.backbone.depth': DEPTH,
                                                        where: dict(type='Pretrained', checkpoint=str(hostile))})
    assert not marker.exists()


def test_non_finite_outputs_are_refused():
    from mmpretrain.structures import DataSample

    from mtr_mm.engine.hooks import InputCheckHook
    good = DataSample(metainfo=dict(img_path='a.jpg')).set_pred_score(torch.tensor([0.3, 0.7]))
    bad = DataSample(metainfo=dict(img_path='b.jpg')).set_pred_score(torch.tensor([float('nan'), 0.7]))
    InputCheckHook().after_test_iter(None, 0, outputs=[good])
    with pytest.raises(FloatingPointError, match='pred_score of b.jpg holds NaN or inf'):
        InputCheckHook().after_test_iter(None, 0, outputs=[good, bad])


# ------------------------------------------------------------------ config values from the command line

@pytest.mark.parametrize('options, message', [
    ({'model.backbone.reduction.schedule.layers': [0.5, 1]}, 'layers entry 0.5'),
    ({'model.backbone.reduction.schedule.flops_reduction': 'abc'}, "flops_reduction must be a number, got 'abc'"),
    ({'model.backbone.reduction.schedule.flops_reduction': None, 'model.backbone.reduction.schedule.keep_ratio': 'x'},
     "keep_ratio must be a number, got 'x'"),
    ({'model.backbone.reduction.method': 'tome', 'model.backbone.reduction.method.keep_ratio': 0.3},
     "reducer 'tome' has no knob keep_ratio"),
    ({'model.backbone.reduction.method': 'nosuch'}, "unknown reducer 'nosuch'"),
    ({'model.backbone.reduction.reactivate_at': 2}, 'reactivate_at=2 needs a dense backbone'),
], ids=['fractional-layer', 'text-target', 'text-keep-ratio', 'knob-the-method-lacks', 'unknown-method',
        'reactivate-on-classifier'])
def test_bad_reduction_values(capsys, tmp_path, options, message):
    assert message in run_test_tool(capsys, MTR_CLS_CONFIG, '--work-dir', tmp_path, options={**SMALL_MTR, **options})


def test_a_method_given_by_name_takes_knobs():
    from mtr_mm.apis import build_model
    model = build_model(str(REPO / MTR_CLS_CONFIG), {'model.backbone.depth': DEPTH,
                                                     'model.backbone.reduction.schedule.layers': [0, 1],
                                                     'model.backbone.reduction.method': 'mtr',
                                                     'model.backbone.reduction.method.keep_ratio': 0.25})
    assert model.backbone.reduction.reducer.keep_ratio == 0.25


def test_duplicate_out_indices(capsys):
    from tools.analysis.get_flops import main
    options = {**TINY_BACKBONE, 'model.backbone.out_indices': [3, -1], 'model.neck.in_channels': [64, 64]}
    message = error_of(capsys, main, REPO / SEG_CONFIG, *cfg_options(options))
    assert 'out_indices [3, -1] name a layer twice' in message


def test_get_flops_ignores_the_weights_and_their_options(capsys):
    from tools.analysis.get_flops import main
    main([str(REPO / SEG_CONFIG), '--cfg-options', 'model.backbone.init_cfg.checkpoint=/nowhere/vim.pth',
          'model.backbone.depth=4', 'model.backbone.out_indices=[0,1,2,3]'])
    assert 'backbone total, one scan direction' in capsys.readouterr().out


# ------------------------------------------------------------------ test data and outputs

def copy_imagenet(tmp_path):
    root = tmp_path / 'imagenet'
    shutil.copytree(IMAGENET, root)
    return root


def test_empty_image_in_the_test_set(capsys, tmp_path, checkpoint):
    root = copy_imagenet(tmp_path)
    (root / 'val' / 'bird.JPEG').write_bytes(b'')
    message = run_test_tool(capsys, CLS_CONFIG, checkpoint, '--work-dir', tmp_path / 'w',
                            options={**SMALL, 'test_dataloader.dataset.data_root': root})
    assert 'bird.JPEG is an empty file (0 bytes' in message


def test_mixed_size_batch_is_refused(capsys, tmp_path, checkpoint):
    """Without a fixed-size pipeline the two ImageNet photos (500x375, 500x334) would be zero-padded
    to one size and the padding scanned; batch size 1 is the fix and works."""
    config = tmp_path / 'no_resize.py'
    config.write_text(f"_base_ = '{REPO / CLS_CONFIG}'\n"
                      "test_dataloader = dict(dataset=dict(pipeline=[dict(type='LoadImageFromFile'), "
                      "dict(type='PackInputs')]))\n")
    message = run_test_tool(capsys, config, checkpoint, '--work-dir', tmp_path / 'w')
    assert 'mixes image sizes' in message and 'test_dataloader.batch_size=1' in message
    from tools.test import main
    metrics = main([str(config), str(checkpoint), '--work-dir', str(tmp_path / 'w1'),
                    *cfg_options({**SMALL, 'test_dataloader.batch_size': 1})])
    assert 'accuracy/top1' in metrics


def test_empty_ade_folders(capsys, tmp_path):
    for folder in ('images/validation', 'annotations/validation'):
        (tmp_path / 'ade' / folder).mkdir(parents=True)
    message = run_test_tool(capsys, SEG_CONFIG, '--work-dir', tmp_path / 'w',
                            options={**SEG, 'test_dataloader.dataset.data_root': tmp_path / 'ade'})
    assert 'images/validation is empty (test_dataloader.dataset.data_prefix.img_path)' in message


def test_coco_annotation_that_is_not_json(capsys, tmp_path):
    coco = tmp_path / 'coco'
    shutil.copytree(SHARED_DATA / 'coco_sample', coco)
    annotation = coco / 'annotations' / 'instances_val2017.json'
    annotation.write_text('<html>not found</html>')
    message = run_test_tool(capsys, DET_CONFIG, '--work-dir', tmp_path / 'w',
                            options={**DET, 'test_dataloader.dataset.data_root': coco,
                                     'test_evaluator.ann_file': annotation})
    assert f'{annotation} (test_' in message and 'is not a readable JSON annotation file' in message


@pytest.mark.parametrize('option, target, message', [
    ('--out', 'a_file/preds.pkl', 'cannot be created: {tmp}/a_file is a file'),
    ('--work-dir', 'a_file', 'exists and is a file'),
    ('--show-dir', 'a_file/show', 'cannot be created: {tmp}/a_file is a file'),
])
def test_unwritable_outputs_fail_before_the_run(capsys, tmp_path, checkpoint, option, target, message):
    (tmp_path / 'a_file').write_text('x')
    args = [checkpoint, option, tmp_path / target]
    if option != '--work-dir':
        args += ['--work-dir', tmp_path / 'w']
    assert message.format(tmp=tmp_path) in run_test_tool(capsys, CLS_CONFIG, *args)
    assert not (tmp_path / 'w').exists()  # refused before the Runner made its work dir


def test_segmentation_pictures_without_a_training_set(tmp_path):
    """--show-dir on a segmentation config: mmseg's own hook would build the (absent) training set."""
    from test_tools_dense import ADE, TINY_MTR
    from tools.test import main
    main([str(REPO / 'configs/mtr_vim_seg.py'), '--work-dir', str(tmp_path / 'w'), '--show-dir', str(tmp_path / 'show'),
          *cfg_options({**SEG, **TINY_MTR, 'test_dataloader.dataset.data_root': ADE})])
    assert len(list((tmp_path / 'show').rglob('test_ADE_val_*.png'))) == 3
    assert len(list((tmp_path / 'show' / 'tokens').glob('ADE_val_*_tokens.png'))) == 3


def test_unwritable_out_dirs_of_the_other_tools(capsys, tmp_path, checkpoint):
    from tools.analysis.compare_reductions import main as compare
    from tools.visualize_tokens import main as visualize
    (tmp_path / 'a_file').write_text('x')
    message = error_of(capsys, visualize, REPO / MTR_CLS_CONFIG, checkpoint, IMAGENET / 'val' / 'bird.JPEG',
                       '--out-dir', tmp_path / 'a_file')
    assert f'--out-dir {tmp_path}/a_file exists and is a file' in message
    message = error_of(capsys, compare, REPO / MTR_CLS_CONFIG, checkpoint, '--out-dir', tmp_path / 'a_file' / 'c')
    assert f'--out-dir {tmp_path}/a_file/c cannot be created: {tmp_path}/a_file is a file' in message


def test_missing_config_and_checkpoint(capsys, tmp_path):
    assert 'nowhere.py' in run_test_tool(capsys, 'configs/nowhere.py', '--work-dir', tmp_path)
    message = run_test_tool(capsys, CLS_CONFIG, tmp_path / 'nowhere.pth', '--work-dir', tmp_path / 'w')
    assert 'nowhere.pth' in message and 'does not exist' in message


# ------------------------------------------------------------------ token pictures

def visualize_error(capsys, *argv):
    from tools.visualize_tokens import main
    return error_of(capsys, main, REPO / MTR_CLS_CONFIG, *argv, '--cfg-options',
                    *cfg_options(SMALL_MTR)[1:])


def test_visualize_without_checkpoint_refuses(capsys, tmp_path):
    message = visualize_error(capsys, IMAGENET / 'val' / 'bird.JPEG', '--out-dir', tmp_path)
    assert 'is not a checkpoint' in message and '--random-weights' in message


def test_visualize_with_random_weights_on_purpose(tmp_path):
    from tools.visualize_tokens import main
    main([str(REPO / MTR_CLS_CONFIG), str(IMAGENET / 'val' / 'bird.JPEG'), '--out-dir', str(tmp_path),
          '--random-weights', *cfg_options(SMALL_MTR)])
    assert (tmp_path / 'bird_tokens.png').exists()


def test_visualize_finds_a_checkpoint_by_content(tmp_path, checkpoint):
    from tools.visualize_tokens import main
    renamed = tmp_path / 'model.weights'
    shutil.copy(checkpoint, renamed)
    main([str(REPO / MTR_CLS_CONFIG), str(renamed), str(IMAGENET / 'val' / 'bird.JPEG'), '--out-dir', str(tmp_path),
          *cfg_options(SMALL_MTR)])
    assert (tmp_path / 'bird_tokens.png').exists()


def file_with(path, data: bytes):
    path.write_bytes(data)
    return path


@pytest.mark.parametrize('make_image, message', [
    (lambda tmp, ckpt: ckpt, 'is a checkpoint, not an image'),
    (lambda tmp, ckpt: tmp / 'missing.jpg', 'does not exist'),
    (lambda tmp, ckpt: file_with(tmp / 'empty.jpg', b''), 'empty file (0 bytes)'),
    (lambda tmp, ckpt: file_with(tmp / 'notes.jpg', b'hello'), 'not an image file'),
], ids=['checkpoint-as-image', 'missing', 'empty', 'text'])
def test_visualize_bad_images(capsys, tmp_path, checkpoint, make_image, message):
    image = make_image(tmp_path, checkpoint)
    assert message in visualize_error(capsys, checkpoint, IMAGENET / 'val' / 'bird.JPEG', image, '--out-dir', tmp_path)


# ------------------------------------------------------------------ reports, launchers, the command line

def test_partial_comparison_report_says_so(tmp_path):
    from tools.analysis.compare_reductions import main
    row = dict(name='none', method=None, target=None, layers=None, restore=None, gflops=1.449, gflops_2dir=2.9,
               metrics={'accuracy/top1': 70.0})
    results = dict(config='c.py', checkpoint='k.pth', images=48, metric='accuracy/top1',
                   plan=['none', 'mtr@0.2', 'mtr@0.4'], rows=[row])
    path = tmp_path / 'results.json'
    path.write_text(json.dumps(results))
    main(['--report-only', str(path), '--out-dir', str(tmp_path)])
    report = (tmp_path / 'results.md').read_text()
    assert 'Partial report: 1 of 3 planned runs done' in report and 'missing: mtr@0.2, mtr@0.4' in report
    results['rows'] = []
    path.write_text(json.dumps(results))
    with pytest.raises(ValueError, match='no finished unreduced run'):
        main(['--report-only', str(path), '--out-dir', str(tmp_path)])


def test_the_command_line_prints_the_message_not_a_traceback(tmp_path):
    empty = tmp_path / 'empty.pth'
    empty.touch()
    done = subprocess.run([sys.executable, 'tools/visualize_tokens.py', MTR_CLS_CONFIG, str(empty),
                           str(IMAGENET / 'val' / 'bird.JPEG'), '--out-dir', str(tmp_path)],
                          cwd=REPO, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, OMP_NUM_THREADS='1'))
    assert done.returncode == 1 and 'Traceback' not in done.stderr
    assert done.stderr.strip().endswith(f"error: checkpoint '{empty}' is an empty file (0 bytes): an interrupted "
                                        'download or copy? Fetch it again.')


def test_similarity_stays_fp32_under_bf16_autocast():
    """Under CPU bf16 autocast the similarity products would be rounded to bf16 and near-ties between
    merge targets would flip; they are computed in fp32 from the (bf16) features."""
    from mtr_mm.reduction._matching import cosine_similarity
    generator = torch.Generator().manual_seed(0)
    a, b = (torch.randn(2, n, 192, generator=generator).bfloat16() for n in (40, 60))
    with torch.autocast('cpu', dtype=torch.bfloat16):
        under_autocast = cosine_similarity(a, b)
    assert under_autocast.dtype == torch.float32
    assert torch.equal(under_autocast, cosine_similarity(a.float(), b.float()))
