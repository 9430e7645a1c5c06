"""The proxy-model recipe (configs/proxy/) through tools/train.py on CPU: a tiny Vim trains 2
iterations in one call, stops with a checkpoint (CallBudgetHook), and a second call resumes it
for 2 more: iteration counter, LR schedule and EMA continue where an uninterrupted run of 4
iterations is, the images continue where the last call stopped, and each call leaves its
learning curve (and validation on generated images); the state, cut into bf16 parts by
tools/proxy_checkpoint.py and joined again, resumes too."""
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
pytest.importorskip('mmpretrain')



def write_config(folder, iters: int) -> str:
    """The recipe, shrunk: 2 blocks of width 16, batches of 2, a 3 + 5 iteration schedule,
    validation on 4 images at iteration 4, fp32 (bf16 AMP needs a GPU), each call stopping after ``iters`` iterations."""
    cfg = Config.fromfile(str(REPO / 'configs/proxy/vim_tiny_fashion_recipe.py'))
    loader = dict(batch_size=2, num_workers=0, persistent_workers=False, pin_memory=False)
    cfg.merge_from_dict(dict(
        model=dict(backbone=dict(embed_dims=16, depth=2), head=dict(in_channels=16)),
        train_dataloader=loader, val_dataloader=dict(loader, dataset=dict(num_samples=4)),
        test_dataloader=loader,
        train_cfg=dict(max_iters=8, val_interval=4),
        default_hooks=dict(logger=dict(interval=1), checkpoint=dict(interval=1000, save_best=None))))
    cfg.param_scheduler[0].end = cfg.param_scheduler[1].begin = 3
    cfg.param_scheduler[1].end = 8
    cfg.optim_wrapper.type = 'OptimWrapper'
    del cfg.optim_wrapper['dtype']
    ema = next(h for h in cfg.custom_hooks if h.type == 'ScheduleEMAHook')
    ema.momentum = 0.1
    budget = next(h for h in cfg.custom_hooks if h.type == 'CallBudgetHook')
    budget.seconds, budget.iters = None, iters
    path = osp.join(folder, f'tiny_recipe_{iters}.py')
    cfg.dump(path)
    return path


def train(config: str, work_dir: str, *extra: str):
    """One training call. mmengine names a call's log folder after the second it starts in: each call
    starts in a new second, as real calls (minutes apart) do, so each keeps its own learning curve."""
    from tools import train as train_tool
    time.sleep(1 - time.time() % 1)
    train_tool.main([config, '--work-dir', work_dir, *extra])


def state(work_dir: str, iteration: int) -> dict:
    checkpoint = torch.load(osp.join(work_dir, f'iter_{iteration}.pth'), map_location='cpu', weights_only=False)
    return dict(iter=checkpoint['meta']['iter'], lr=checkpoint['optimizer']['param_groups'][0]['lr'],
                schedulers=[s['last_step'] for s in checkpoint['param_schedulers']],
                ema_steps=int(checkpoint['ema_state_dict']['steps']),
                ema=checkpoint['state_dict'], source=checkpoint['ema_state_dict'])


def learning_curves(work_dir: str) -> list:
    """Each call's scalars.json entries, oldest call first."""
    curves = []
    for path in sorted(glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json'))):
        with open(path) as f:
            curves.append([json.loads(line) for line in f])
    return curves


@pytest.fixture
def drawn(monkeypatch):
    """The training images each call draws, by index (the loader runs in this process)."""
    from mtr_mm.data.generated_datasets import FashionScenesClsDataset
    draws = []
    draw = FashionScenesClsDataset.__getitems__

    def recording(self, indices):
        if self.split == 'train':
            draws.append(list(indices))
        return draw(self, indices)

    monkeypatch.setattr(FashionScenesClsDataset, '__getitems__', recording)
    return draws


def test_resumed_training_continues_schedule_and_ema(tmp_path, drawn):
    calls, straight = str(tmp_path / 'calls'), str(tmp_path / 'straight')
    two, four = write_config(tmp_path, 2), write_config(tmp_path, 4)
    train(two, calls)
    assert drawn == [[0, 1], [2, 3]]
    first = state(calls, 2)
    assert first['iter'] == 2 and first['ema_steps'] == 2
    assert open(osp.join(calls, 'last_checkpoint')).read().strip().endswith('iter_2.pth')

    train(two, calls, '--resume')  # from work_dir/last_checkpoint
    resumed = state(calls, 4)
    assert drawn[2:] == [[4, 5], [6, 7]]  # the images that follow; those trained on are not drawn again
    train(four, straight)
    reference = state(straight, 4)
    assert resumed['iter'] == reference['iter'] == 4
    assert resumed['schedulers'] == reference['schedulers']
    assert resumed['lr'] == pytest.approx(reference['lr'], rel=1e-6)
    assert resumed['ema_steps'] == reference['ema_steps'] == 4  # the EMA was restored, not restarted
    # the averaged weights moved on from those of iteration 2, and differ from the trained ones
    name = next(k for k in resumed['ema'] if k.endswith('head.fc.weight'))
    assert not torch.equal(resumed['ema'][name], first['ema'][name])
    assert not torch.equal(resumed['ema'][name], resumed['source']['module.' + name])
    # the learning curve of each call: iterations 1-2, then 3-4 and the validation at 4
    curves = learning_curves(calls)
    assert [[e['step'] for e in curve if 'lr' in e] for curve in curves] == [[1, 2], [3, 4]]
    assert [e['step'] for e in curves[1] if 'accuracy/top1' in e] == [4]

    # through the GPU machine's file limits: cut into bf16 parts, joined, resumed for 2 more
    from tools import proxy_checkpoint
    parts_dir = tmp_path / 'parts'
    proxy_checkpoint.main(['split', osp.join(calls, 'iter_4.pth'), str(parts_dir / 'state'), '--part-mib', '0.1'])
    parts = sorted(str(p) for p in parts_dir.glob('state.pth.part*'))
    assert len(parts) > 1 and all(osp.getsize(p) <= 0.1 * 2**20 for p in parts)
    carried = str(tmp_path / 'carried')
    joined = proxy_checkpoint.join_parts(parts, osp.join(carried, 'iter_4.pth'))
    train(two, carried, '--resume', joined)
    after = state(carried, 6)
    assert after['iter'] == 6 and after['ema_steps'] == 6
    proxy_checkpoint.main(['split', osp.join(carried, 'iter_6.pth'), str(parts_dir / 'weights'), '--weights-only'])
    weights = torch.load(str(parts_dir / 'weights.pth.part1'), weights_only=False)
    assert set(weights) == {'state_dict', 'meta'} and weights['state_dict'][name].dtype == torch.bfloat16

