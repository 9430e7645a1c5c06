"""Classification end to end: official checkpoints through tools/test.py, init_model, the
converter, init_cfg Pretrained, get_flops and the token pictures, on the real ImageNet samples."""
import re

import pytest
import torch

from mtr_mm.ops import get_scan_kernel, set_scan_kernel

from reference_vim import official_state_dict, reference_forward, save_official_checkpoint
from shared_paths import REPO, SHARED_DATA

IMAGENET = SHARED_DATA / 'imagenet_sample'
CONFIG = str(REPO / 'configs' / 'vim' / 'vim_tiny_in1k.py')
MTR_CONFIG = str(REPO / 'configs' / 'mtr_vim_cls.py')
DEPTH = 3
SMALL = [f'model.backbone.depth={DEPTH}', f'test_dataloader.dataset.data_root={IMAGENET}',
         'test_dataloader.num_workers=0', 'test_dataloader.batch_size=2']


@pytest.fixture(scope='module')
def official(tmp_path_factory):
    state_dict = official_state_dict(depth=DEPTH, seed=5)
    path = tmp_path_factory.mktemp('official') / 'vim_t_midclstok_test.pth'
    save_official_checkpoint(path, state_dict)
    return str(path), state_dict


def run_test_tool(capsys, *args):
    from tools.test import main
    main(list(args))
    return capsys.readouterr()


def preprocessed_samples(model):
    """The two sample images after the config's test pipeline and data preprocessor."""
    from mmengine.dataset import pseudo_collate
    from mmpretrain.datasets import ImageNet
    dataset = ImageNet(data_root=str(IMAGENET), split='val', pipeline=model.cfg.test_dataloader.dataset.pipeline)
    batch = model.data_preprocessor(pseudo_collate([dataset[0], dataset[1]]), False)
    return batch['inputs'], [s.gt_label.item() for s in batch['data_samples']]


def test_init_model_with_official_checkpoint_gives_reference_logits(official):
    from mtr_mm.apis import init_model
    path, state_dict = official
    model = init_model(CONFIG, path, cfg_options={'model.backbone.depth': DEPTH})
    assert not model.training
    inputs, labels = preprocessed_samples(model)
    assert labels == [65, 12] or labels == [12, 65]
    with torch.no_grad():
        logits = model(inputs, mode='tensor')
    expected = reference_forward(state_dict, inputs)
    assert ((logits.double() - expected).abs().max() / expected.abs().max()).item() <= 1e-5


def test_converter_and_pretrained_init_agree_with_direct_loading(official, tmp_path):
    from mtr_mm.apis import init_model
    from tools.convert_vim_ckpt import main as convert
    path, _ = official
    converted = str(tmp_path / 'vim_tiny_mm.pth')
    convert([path, converted])
    direct = init_model(CONFIG, path, cfg_options={'model.backbone.depth': DEPTH})
    via_file = init_model(CONFIG, converted, cfg_options={'model.backbone.depth': DEPTH})
    backbone_only = init_model(CONFIG, cfg_options={
        'model.backbone.depth': DEPTH, 'model.backbone.init_cfg': dict(type='Pretrained', checkpoint=path)})
    inputs, _ = preprocessed_samples(direct)
    with torch.no_grad():
        assert torch.equal(direct(inputs, mode='tensor'), via_file(inputs, mode='tensor'))
        assert torch.equal(direct.backbone(inputs)[0], backbone_only.backbone(inputs)[0])
    dense = str(tmp_path / 'vim_tiny_dense.pth')
    convert([path, dense, '--to', 'dense', '--img-size', '512'])
    dense_state = torch.load(dense)['state_dict']
    assert dense_state['backbone.vim.pos_embed'].shape == (1, 32 * 32, 192) and 'backbone.vim.cls_token' not in dense_state
    ema = str(tmp_path / 'ema.pth')
    convert([path, ema, '--key', 'model_ema'])
    assert not torch.equal(torch.load(ema)['state_dict']['head.fc.weight'],
                           torch.load(converted)['state_dict']['head.fc.weight'])


def test_tools_test_reports_top1_flops_and_reduction(official, capsys, tmp_path):
    path, _ = official
    run_test_tool(capsys, CONFIG, path, '--work-dir', str(tmp_path / 'plain'),
                          '--out', str(tmp_path / 'preds.pkl'), '--cfg-options', *SMALL)
    log = (tmp_path / 'plain').rglob('*.log')
    text = '\n'.join(p.read_text() for p in log)
    assert re.search(r'accuracy/top1: \d+\.\d+.*backbone_gflops: 0\.\d+', text)
    assert (tmp_path / 'preds.pkl').stat().st_size > 0
    run_test_tool(capsys, MTR_CONFIG, path, '--work-dir', str(tmp_path / 'mtr'), '--show-dir', str(tmp_path / 'show'),
                  '--cuda-graph', '--scan-kernel', 'mamba', '--cfg-options', *SMALL,
                  'model.backbone.reduction.schedule.layers=[0,1]')
    text = '\n'.join(p.read_text() for p in (tmp_path / 'mtr').rglob('*.log'))
    assert 'cuda_graph=True' in text  # the switch reaches the backbone (an eager forward off the GPU)
    assert get_scan_kernel() == 'mamba'  # the process-wide scan kernel of CUDA inference (no effect on CPU)
    set_scan_kernel('auto')
    flops = float(re.search(r'backbone_gflops: (\d+\.\d+)', text).group(1))
    assert 'reduction: MTRReducer' in text
    assert sorted(p.name for p in (tmp_path / 'show' / 'tokens').iterdir()) == ['bird_tokens.png', 'demo_tokens.png']
    # depth 3 + stem/head: the 40 % target is met on the reduced model too
    from mtr_mm.reduction import VimDims, vim_flops
    full = vim_flops(VimDims(192, DEPTH, dt_rank=12), 196, 197).total / 1e9
    assert flops == pytest.approx(full * 0.6, abs=0.01 * full)


def test_switching_method_is_one_key(official, capsys, tmp_path):
    path, _ = official
    run_test_tool(capsys, MTR_CONFIG, path, '--work-dir', str(tmp_path), '--cfg-options', *SMALL,
                  'model.backbone.reduction.schedule.layers=[0,1]', 'model.backbone.reduction.method=tome',
                  'model.backbone.reduction.schedule.flops_reduction=0.3')  # ToMe merges at most half per layer
    text = '\n'.join(p.read_text() for p in tmp_path.rglob('*.log'))
    assert 'reduction: ToMeReducer' in text


def test_get_flops_prints_community_and_both_direction_numbers(capsys):
    from tools.analysis.get_flops import main
    main([CONFIG])
    out = capsys.readouterr().out
    assert re.search(r'one scan direction.*: 1\.449 G', out)
    assert re.search(r'both scan directions: +1\.823 G', out)
    main([MTR_CONFIG])
    out = capsys.readouterr().out
    assert re.search(r'\(unreduced 1\.449 G, 40\.\d% fewer\)', out)
    assert len(re.findall(r'^ +\d+ +\d+ ', out, re.M)) == 24
    for dense in ('mtr_vim_seg.py', 'mtr_vim_det.py'):  # neck + dense head counted by mmengine's analyzer
        main([str(REPO / 'configs' / dense), '--shape', '256', '256'])
        out = capsys.readouterr().out
        assert re.search(r'neck \+ decode head / RPN .*: +\d+\.\d+ G', out), out


def test_visualize_tokens_writes_pictures(official, tmp_path):
    from tools.visualize_tokens import main
    path, _ = official
    main([MTR_CONFIG, path, str(IMAGENET / 'val' / 'bird.JPEG'), '--out-dir', str(tmp_path),
          '--cfg-options', f'model.backbone.depth={DEPTH}', 'model.backbone.reduction.schedule.layers=[0,1]'])
    assert (tmp_path / 'bird_tokens.png').stat().st_size > 10_000


def test_wrong_checkpoints_fail_clearly(official, tmp_path):
    from mtr_mm.apis import init_model
    from mtr_mm.checkpoint import CheckpointError
    path, _ = official
    with pytest.raises(CheckpointError, match='(?s)size mismatch.*arch tiny/small/base'):
        init_model(str(REPO / 'configs' / 'vim' / 'vim_small_in1k.py'), path, cfg_options={'model.backbone.depth': DEPTH})
    with pytest.raises(CheckpointError, match='missing'):
        init_model(CONFIG, path)  # depth 24 config, depth 3 checkpoint
