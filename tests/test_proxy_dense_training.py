"""The dense proxy recipes (configs/proxy/vim_tiny_upernet_fashion_recipe.py,
vim_tiny_maskrcnn_fashion_recipe.py) through tools/train.py on CPU, shrunk to tiny widths: the
model builds, trains 2 iterations on scenes drawn on the fly, stops with a checkpoint
(CallBudgetHook), and a second call resumes it (--resume) for 2 more with the scenes that follow
(none drawn twice, none skipped), its iteration counter, LR schedule and EMA where an uninterrupted
run of 4 iterations has them; the validation at iteration 4 reads the tiny val files make_fashion_scenes.py writes
and reports mIoU / COCO bbox and segm mAP."""
import glob
import json
import os.path as osp
import time

import pytest
import torch
from mmengine.config import Config

from mtr_mm.data import fashion_scenes as fs
from script_runner import REPO

if not osp.isfile(osp.join(fs.SYSTEM_FASHION_DIR, fs.FASHION_FILES['train'][0])):
    pytest.skip(f'Fashion-MNIST is missing from {fs.SYSTEM_FASHION_DIR}', allow_module_level=True)
pytest.importorskip('skimage', reason='scikit-image (the background photographs) is not installed')

WIDTH = 16


def shrink_seg(cfg: Config, data_root: str):
    """4 blocks of width 16, heads of width 16; val and test read ``data_root``."""
    cfg.merge_from_dict(dict(model=dict(
        backbone=dict(embed_dims=WIDTH, depth=4, out_indices=[0, 1, 2, 3], init_cfg=None),
        neck=dict(in_channels=[WIDTH] * 4, out_channels=WIDTH),
        decode_head=dict(in_channels=[WIDTH] * 4, channels=WIDTH),
        auxiliary_head=dict(in_channels=WIDTH, channels=WIDTH))))
    for loader in (cfg.val_dataloader, cfg.test_dataloader):
        loader.dataset.data_root = osp.join(data_root, 'seg')


def shrink_det(cfg: Config, data_root: str):
    """2 blocks of width 16 on 256x256 inputs, neck and heads of width 16, few proposals and RoIs;
    val and test read ``data_root``."""
    size = 256
    heads = [dict(head, in_channels=WIDTH, conv_out_channels=WIDTH, fc_out_channels=WIDTH)
             for head in cfg.model.roi_head.bbox_head]
    cfg.merge_from_dict(dict(model=dict(
        data_preprocessor=dict(pad_size_divisor=size),
        backbone=dict(embed_dims=WIDTH, depth=2, out_indices=[1], img_size=size, init_cfg=None),
        neck=dict(in_channels=WIDTH, out_channels=WIDTH),
        rpn_head=dict(in_channels=WIDTH, feat_channels=WIDTH),
        roi_head=dict(bbox_roi_extractor=dict(out_channels=WIDTH), mask_roi_extractor=dict(out_channels=WIDTH),
                      bbox_head=heads, mask_head=dict(in_channels=WIDTH, conv_out_channels=WIDTH)),
        train_cfg=dict(rpn_proposal=dict(nms_pre=200, max_per_img=100)),
        test_cfg=dict(rpn=dict(nms_pre=200, max_per_img=100)))))
    for stage in cfg.model.train_cfg.rcnn:
        stage.sampler.num = 32
    for step in cfg.train_dataloader.dataset.pipeline:
        for key in ('scale', 'crop_size', 'size'):
            if key in step:
                step[key] = (size, size)
    for loader, split in ((cfg.val_dataloader, 'valsplit2017'), (cfg.test_dataloader, 'val2017')):
        loader.dataset.data_root = osp.join(data_root, 'det') + '/'
        next(step for step in loader.dataset.pipeline if step.type == 'Resize').scale = (size, size)
    cfg.val_evaluator.ann_file = osp.join(data_root, 'det', 'annotations', 'instances_valsplit2017.json')
    cfg.test_evaluator.ann_file = osp.join(data_root, 'det', 'annotations', 'instances_val2017.json')


RECIPES = {
    'seg': ('vim_tiny_upernet_fashion_recipe.py', 'FashionScenesSegDataset', shrink_seg, ['mIoU']),
    'det': ('vim_tiny_maskrcnn_fashion_recipe.py', 'FashionScenesDetDataset', shrink_det,
            ['coco/bbox_mAP', 'coco/segm_mAP']),
}


def write_config(folder, task: str, data_root: str, iters: int) -> str:
    """The recipe, shrunk: tiny widths, batches of 2, a 3 + 5 iteration schedule, validation on the
    2 val scenes at iteration 4, fp32 (bf16 AMP needs a GPU), each call stopping after ``iters``."""
    name, _, shrink, _ = RECIPES[task]
    cfg = Config.fromfile(str(REPO / 'configs' / 'proxy' / name))
    loader = dict(batch_size=2, num_workers=0, persistent_workers=False)
    cfg.merge_from_dict(dict(
        train_dataloader=dict(loader, pin_memory=False), val_dataloader=loader, test_dataloader=loader,
        train_cfg=dict(max_iters=8, val_interval=4),
        default_hooks=dict(logger=dict(interval=1), checkpoint=dict(interval=1000, save_best=None))))
    shrink(cfg, data_root)
    cfg.param_scheduler[0].end = 3
    cfg.param_scheduler[1].begin = 3 if task == 'seg' else 0
    cfg.param_scheduler[1].end = 8
    if task == 'det':
        cfg.param_scheduler[1].milestones = [6, 7]
    cfg.optim_wrapper.type = 'OptimWrapper'
    del cfg.optim_wrapper['dtype']
    next(h for h in cfg.custom_hooks if h.type == 'ScheduleEMAHook').momentum = 0.1
    budget = next(h for h in cfg.custom_hooks if h.type == 'CallBudgetHook')
    budget.seconds, budget.iters = None, iters
    path = osp.join(folder, f'tiny_{task}_{iters}.py')
    cfg.dump(path)
    return path


@pytest.fixture(scope='module')
def val_files(tmp_path_factory):
    """2 val + 2 test scenes of each kind, as the GPU call writes them (at full size)."""
    from tools.data import make_fashion_scenes
    out = tmp_path_factory.mktemp('fashion_scenes')
    make_fashion_scenes.main(['--out', str(out), '--cls-train', '0', '--cls-val', '0', '--cls-test', '0',
                              '--seg', '2', '--seg-val', '2', '--det', '2', '--det-val', '2'])
    return str(out)


def drawn_scenes(monkeypatch, dataset: str) -> list:
    """The training scenes each call draws, by index (the loader runs in this process)."""
    from mtr_mm.data import generated_datasets
    cls = getattr(generated_datasets, dataset)
    draws, draw = [], cls.draw

    def recording(self, index):
        if self.split == 'train':
            draws.append(index.tolist())
        return draw(self, index)

    monkeypatch.setattr(cls, 'draw', recording)
    return draws


def train(config: str, work_dir: str, *extra: str):
    """One training call, in a new second (mmengine names a call's log folder after it)."""
    from tools import train as train_tool
    time.sleep(1 - time.time() % 1)
    train_tool.main([config, '--work-dir', work_dir, *extra])


@pytest.mark.parametrize('task', sorted(RECIPES))
def test_dense_recipe_trains_resumes_and_validates(task, tmp_path, val_files, monkeypatch):
    torch.manual_seed(0)
    drawn = drawn_scenes(monkeypatch, RECIPES[task][1])
    work_dir = str(tmp_path / 'calls')
    config = write_config(tmp_path, task, val_files, 2)
    train(config, work_dir)
    assert drawn == [[0, 1], [2, 3]]
    assert open(osp.join(work_dir, 'last_checkpoint')).read().strip().endswith('iter_2.pth')

    train(config, work_dir, '--resume')
    assert drawn[2:] == [[4, 5], [6, 7]]  # the scenes that follow; those trained on are not drawn again
    train(write_config(tmp_path, task, val_files, 4), str(tmp_path / 'straight'))
    resumed, straight = (torch.load(osp.join(folder, 'iter_4.pth'), map_location='cpu', weights_only=False)
                         for folder in (work_dir, str(tmp_path / 'straight')))
    assert resumed['meta']['iter'] == straight['meta']['iter'] == 4
    assert resumed['param_schedulers'] == straight['param_schedulers']
    assert [g['lr'] for g in resumed['optimizer']['param_groups']] == \
        pytest.approx([g['lr'] for g in straight['optimizer']['param_groups']], rel=1e-6)
    assert int(resumed['ema_state_dict']['steps']) == 4  # the EMA was restored, not restarted

    curves = []  # each call's learning curve: iterations 1-2, then 3-4 and the validation at 4
    for path in sorted(glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json'))):
        with open(path) as f:
            curves.append([json.loads(line) for line in f])
    assert [[e['step'] for e in curve if 'lr' in e] for curve in curves] == [[1, 2], [3, 4]]
    val = [e for e in curves[1] if RECIPES[task][3][0] in e]
    assert [e['step'] for e in val] == [4] and all(key in val[0] for key in RECIPES[task][3])
