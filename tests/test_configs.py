"""Every shipped config loads, belongs to a known library and builds its model (on the meta device:
shapes only), which also validates each token-reduction schedule for the model's input grid."""
import importlib
from pathlib import Path

import pytest
import torch
from mmengine.config import Config

from mtr_mm.apis import load_config, task_library
from mtr_mm.engine.hooks import find_vim
from shared_paths import REPO, SHARED_DATA

CONFIGS = sorted(str(p.relative_to(REPO)) for p in (REPO / 'configs').rglob('*.py') if '_base_' not in p.parts)


def test_every_config_is_found():
    assert len(CONFIGS) > 30 and 'configs/mtr_vim_seg.py' in CONFIGS


@pytest.mark.parametrize('config', CONFIGS)
def test_config_builds_its_model(config):
    cfg = load_config(str(REPO / config))
    task_library(cfg)
    registry = importlib.import_module(f'{cfg.default_scope}.registry').MODELS
    with torch.device('meta'):
        model = registry.build(cfg.model)
    vim = find_vim(model)
    assert vim is not None
    reduction = cfg.model.backbone.get('reduction')
    if reduction is None:
        assert vim.reduction is None
        return
    # The shipped MTR schedules: solved within 1 % of their target for the configured input grid.
    target = reduction['schedule']['flops_reduction']
    achieved = 1 - vim.flops(vim.pos_grid).total / vim.flops(vim.pos_grid, reduced=False).total
    assert abs(achieved - target) < 0.01, (config, achieved)
    dense = cfg.default_scope in ('mmseg', 'mmdet')
    assert (reduction['schedule']['layers'], reduction['method']) == (SHIPPED_DENSE if dense else SHIPPED_CLS), config


# The shipped MTR defaults, each chosen on a validation split (configs/_base_/reductions/): classification
# (images and video) at layers [5, 9, 13, 17, 21] with keep_ratio=0.5 (the Fashion classifier's val),
# segmentation and detection at [4, 8, 12, 16, 20] with MTR's code-default knobs (the segmenter's val).
SHIPPED_CLS = ([5, 9, 13, 17, 21], dict(type='mtr', keep_ratio=0.5))
SHIPPED_DENSE = ([4, 8, 12, 16, 20], dict(type='mtr'))


@pytest.mark.parametrize('config, shipped', [
    ('configs/mtr_vim_cls.py', SHIPPED_CLS), ('configs/mtr/mtr_vim_small_in1k_r20.py', SHIPPED_CLS),
    ('configs/demo/mtr_vim_tiny_fashion.py', SHIPPED_CLS), ('configs/mtr_videomamba_k400.py', SHIPPED_CLS),
    ('configs/mtr_vim_seg.py', SHIPPED_DENSE), ('configs/mtr_seg/mtr_vim_tiny_upernet_fashion_r40.py', SHIPPED_DENSE),
    ('configs/mtr_seg/mtr_vim_small_upernet_ade20k_r20.py', SHIPPED_DENSE),
    ('configs/mtr_vim_det.py', SHIPPED_DENSE),
    ('configs/mtr_det/mtr_vim_small_cascade_mask_rcnn_coco_r30.py', SHIPPED_DENSE)])
def test_shipped_mtr_defaults(config, shipped):
    """The reduction each task's configs resolve to, and the reducer it builds: the classifier's keep_ratio
    0.5, the dense configs' MTR code defaults (not the classifier's knob: the dense base replaces the method)."""
    from mtr_mm.reduction import build_reducer
    from mtr_mm.reduction.mtr import MTRReducer
    reduction = load_config(str(REPO / config)).model.backbone.reduction
    layers, method = shipped
    assert reduction['schedule']['layers'] == layers and reduction['method'] == method
    assert reduction['restore'] == 'unmerge' and reduction['schedule']['flops_reduction'] in (0.2, 0.3, 0.4)
    reducer, defaults = build_reducer(reduction['method']), MTRReducer()
    assert reducer.keep_ratio == method.get('keep_ratio', defaults.keep_ratio)
    assert (reducer.similarity, reducer.merge_weights, reducer.delta_activation) == (
        defaults.similarity, defaults.merge_weights, defaults.delta_activation)


def test_shipped_layers_reads_the_classification_base():
    from tools.report_utils import shipped_layers
    assert shipped_layers() == SHIPPED_CLS[0]


@pytest.mark.parametrize('config', CONFIGS)
def test_predictions_do_not_depend_on_batch_composition(config):
    """Two photos of different sizes through the config's test pipeline and into its InputCheckHook:
    a config that batches images must bring them to sizes the data preprocessor pads alike alone and
    together (classification: one fixed size; detection: each padded to 1024 alone); the hook
    guards every config and refuses any batch that padding would change."""
    from types import SimpleNamespace

    from mtr_mm.engine.hooks import InputCheckHook
    from tools.visualize_tokens import test_pipeline
    cfg = load_config(str(REPO / config))
    task_library(cfg)
    assert any(hook['type'] == 'InputCheckHook' for hook in cfg.custom_hooks)
    if cfg.default_scope == 'mmaction':  # video views: shorter side resized, then cropped square to one size
        steps = {step['type']: step for step in cfg.test_dataloader.dataset.pipeline}
        assert steps['Resize']['scale'] == (-1, 224) and steps['ThreeCrop']['crop_size'] == 224
        return
    pipeline = test_pipeline(cfg)
    images = [pipeline(dict(img_path=str(SHARED_DATA / 'imagenet_sample' / 'val' / name)))['inputs']
              for name in ('demo.JPEG', 'bird.JPEG')]
    with torch.device('meta'):
        model = importlib.import_module(f'{cfg.default_scope}.registry').MODELS.build(cfg.model)
    runner = SimpleNamespace(model=model)
    check = InputCheckHook().before_test_iter
    if cfg.default_scope == 'mmpretrain':
        assert images[0].shape == images[1].shape == (3, 224, 224)
        check(runner, 0, dict(inputs=images))
    elif cfg.default_scope == 'mmdet':  # each image padded to 1024 x 1024 alone: a batch changes nothing
        check(runner, 0, dict(inputs=images))
    else:  # mmseg pads each test image alone and takes batches of one size only (Fashion scenes: all 512 x 512)
        with pytest.raises(ValueError, match='mixes image sizes'):
            check(runner, 0, dict(inputs=images))


@pytest.mark.parametrize('config', ['vim_tiny_fashion_recipe.py', 'vim_tiny_fashion_short.py', 'vim_small_fashion_short.py'])
@pytest.mark.parametrize('max_iters', [300, 5000])
def test_schedule_follows_proxy_max_iters(config, max_iters, monkeypatch):
    """$PROXY_MAX_ITERS (set by tools/proxy_call.sh from its probe) sets the schedule: its end, the images
    drawn, and a warm-up of one epoch (214 iterations) but at most a fifth of a short schedule, which
    must end before the cosine begins."""
    monkeypatch.setenv('PROXY_MAX_ITERS', str(max_iters))
    pytest.importorskip('mmpretrain')
    cfg = Config.fromfile(str(REPO / 'configs' / 'proxy' / config))
    warmup, cosine = cfg.param_scheduler
    assert warmup.end == cosine.begin == min(214, max_iters // 5) and cosine.end == max_iters
    assert cfg.train_cfg.max_iters == max_iters and cfg.train_dataloader.dataset.num_samples == max_iters * 256
