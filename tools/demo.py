"""The embedded demo: MTR off and on, side by side, on images and a checkpoint shipped in demo/.

    python tools/demo.py            (what `make demo` runs)

Runs tools/test.py on configs/demo/mtr_vim_tiny_fashion.py without and with MTR (40 % fewer
FLOPs), times both models on the same images (tools/timing.py: warm-up, interleaved rounds over
several batches, medians and their spread), prints top-1, GFLOPs and images/s side by side, and
writes token pictures to work_dirs/demo/. The runs log at WARNING: what it prints is the table.
A last line gives the FLOPs of the same MTR schedule on a VideoMamba video view
(configs/mtr_videomamba_k400.py).
"""
import os
import os.path as osp
import sys

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)

import torch  # noqa: E402
from mmcv.transforms import Compose  # noqa: E402
from mmengine.config import Config  # noqa: E402
from mmengine.dataset import pseudo_collate  # noqa: E402
from mmengine.registry import DATASETS  # noqa: E402
from mmengine.utils import ProgressBar  # noqa: E402

from mtr_mm.apis import init_model  # noqa: E402
from mtr_mm.models import VisionMamba, vim_arch  # noqa: E402
from tools import cli  # noqa: E402
from tools.proxy_checkpoint import join_parts  # noqa: E402
from tools.test import main as run_test  # noqa: E402
from tools.timing import MIN_ROUNDS, interleaved_rounds, rate, ratio_verdict, spread, wall_seconds  # noqa: E402
from tools.visualize_tokens import visualize  # noqa: E402

CONFIG = osp.join(ROOT, 'configs', 'demo', 'mtr_vim_tiny_fashion.py')
PARTS = [osp.join(ROOT, 'demo', 'checkpoints', f'vim_tiny_fashion.pth.part{i}') for i in (1, 2)]
WORK_DIR = osp.join(ROOT, 'work_dirs', 'demo')
# Config overrides. MTR runs as the config ships it: layers [5, 9, 13, 17, 21] and keep_ratio 0.5
# (configs/_base_/reductions/mtr.py), chosen on this checkpoint's validation split (docs/benchmarks.md §3:
# 120 val images, not the test images shown here).
RUNS = {'unreduced': {'model.backbone.reduction': None}, 'MTR -40% FLOPs': {}}
PICTURES = [osp.join(ROOT, 'demo', 'data', 'imagenet', 'bird.JPEG'), osp.join(ROOT, 'demo', 'data', 'ade',
                                                                                'ADE_val_00000001.jpg')]
# The pictures show one image at a time at its own size (no batch, so no padding).
NATIVE_SIZE = [dict(type='LoadImageFromFile'), dict(type='PackInputs')]
BATCH = 8


def join_checkpoint() -> str:
    """The checkpoint is shipped as two byte ranges (each under 10 MB); join them (again every run:
    a stale copy of an older checkpoint can have the same size)."""
    return join_parts(PARTS, osp.join(WORK_DIR, 'vim_tiny_fashion.pth'))


def test_batches(model) -> list:
    """The demo's test images as preprocessed batches of BATCH."""
    dataset = DATASETS.build(model.cfg.test_dataloader.dataset)
    return [model.data_preprocessor(pseudo_collate([dataset[i] for i in range(start, start + BATCH)]), False)['inputs']
            for start in range(0, len(dataset) - BATCH + 1, BATCH)]


def time_models(models: dict, batches: list, progress: ProgressBar) -> dict:
    """Per model: images/s of the median round and the spread of the rounds."""
    def timed(model):
        def call(k):
            seconds = wall_seconds(lambda: model(batches[k % len(batches)], mode='tensor'))
            progress.update()
            return seconds
        return call

    with torch.no_grad():
        for model in models.values():  # warm-up: allocator, thread pool
            model(batches[0], mode='tensor')
        seconds = interleaved_rounds({name: timed(model) for name, model in models.items()}, MIN_ROUNDS)
    return {name: (rate(s, BATCH), spread(s)) for name, s in seconds.items()}


def videomamba_line(config: str = osp.join(ROOT, 'configs', 'mtr_videomamba_k400.py')) -> str:
    """Backbone GFLOPs of one view of the video config, unreduced and with its reduction (analytic:
    no VideoMamba checkpoint ships in demo/)."""
    backbone = Config.fromfile(config).model.backbone
    with torch.device('meta'):
        model = VisionMamba(**vim_arch(backbone.arch, num_frames=backbone.num_frames), reduction=backbone.reduction)
    full, reduced = (model.flops(model.pos_grid, reduced=r).total / 1e9 for r in (False, True))
    return (f'VideoMamba-{backbone.arch.split("_")[1][0].upper()}, one {backbone.num_frames}-frame view '
            f'({model.flops(model.pos_grid).tokens[0]} tokens): {full:.2f} -> {reduced:.2f} GFLOPs with MTR '
            f'({1 - reduced / full:.1%} fewer; configs/mtr_videomamba_k400.py, docs/videomamba.md)')


def main():
    os.chdir(ROOT)  # the demo config's data_root is relative to the repository
    checkpoint = join_checkpoint()
    progress = ProgressBar(len(RUNS) + MIN_ROUNDS * len(RUNS) + len(PICTURES))
    metrics, models = {}, {}
    for name, options in RUNS.items():
        options = {**options, 'log_level': 'WARNING'}
        args = [CONFIG, checkpoint, '--work-dir', osp.join(WORK_DIR, 'logs'),
                '--cfg-options', *(f'{k}={v}' for k, v in options.items())]
        if name != 'unreduced':
            args += ['--show-dir', osp.join(WORK_DIR, 'show')]
        metrics[name] = run_test(args)
        models[name] = init_model(CONFIG, checkpoint, cfg_options=options)
        progress.update()
    batches = test_batches(models['unreduced'])
    speed = time_models(models, batches, progress)
    pictures = []
    for image in PICTURES:
        pictures.append(visualize(models['MTR -40% FLOPs'], image, WORK_DIR, Compose(NATIVE_SIZE)))
        progress.update()

    reduction = models['MTR -40% FLOPs'].cfg.model.backbone.reduction
    print(f'\n\nMTR on Vim-T (Fashion-MNIST-on-photos checkpoint, {BATCH * len(batches)} embedded test images, CPU, '
          f'batch {BATCH}; images/s: median of {MIN_ROUNDS} interleaved rounds; MTR at layers '
          f'{reduction.schedule.layers}, keep_ratio {reduction.method.keep_ratio}: chosen on validation images)')
    print(f'{"run":<16} {"top-1 %":>8} {"GFLOPs":>8} {"images/s":>9} {"spread":>7}')
    for name in RUNS:
        print(f'{name:<16} {metrics[name]["accuracy/top1"]:>8.2f} {metrics[name]["backbone_gflops"]:>8.3f} '
              f'{speed[name][0]:>9.2f} {speed[name][1]:>7.0%}')
    base, mtr = RUNS
    print(f'MTR: {1 - metrics[mtr]["backbone_gflops"] / metrics[base]["backbone_gflops"]:.1%} fewer FLOPs, '
          + ratio_verdict(speed[mtr][0] / speed[base][0], [speed[base][1], speed[mtr][1]]))
    print(f'token pictures: {osp.join(WORK_DIR, "show", "tokens")} (test images), ' + ', '.join(pictures))
    print(videomamba_line())


if __name__ == '__main__':
    cli.run(main)
