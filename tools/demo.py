"""The embedded demo: MTR off and on, side by side, on images and a checkpoint shipped in demo/.

    python tools/demo.py            (what `make demo` runs)

Runs tools/test.py on configs/demo/mtr_vim_tiny_fashion.py without and with MTR (40 % fewer
FLOPs), times both models on the same images (interleaved rounds, medians), prints top-1, GFLOPs
and images/s side by side, and writes token pictures to work_dirs/demo/. A last line gives the
FLOPs of the same MTR schedule on a VideoMamba video view (configs/mtr_videomamba_k400.py).
"""
import os
import os.path as osp
import statistics
import sys
import time

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)

import torch  # noqa: E402
from mmengine.config import Config  # noqa: E402
from mmengine.dataset import pseudo_collate  # noqa: E402
from mmengine.registry import DATASETS  # noqa: E402

from mtr_mm.apis import init_model  # noqa: E402
from mtr_mm.models import VisionMamba, vim_arch  # noqa: E402
from tools.test import main as run_test  # noqa: E402
from tools.visualize_tokens import test_pipeline, visualize  # noqa: E402

CONFIG = osp.join(ROOT, 'configs', 'demo', 'mtr_vim_tiny_fashion.py')
PARTS = [osp.join(ROOT, 'demo', 'checkpoints', f'vim_tiny_fashion_fp16.pth.part{i}') for i in (1, 2)]
WORK_DIR = osp.join(ROOT, 'work_dirs', 'demo')
RUNS = {'unreduced': {'model.backbone.reduction': None}, 'MTR -40% FLOPs': {}}  # config overrides
PICTURES = [osp.join(ROOT, 'demo', 'data', 'imagenet', 'bird.JPEG'), osp.join(ROOT, 'demo', 'data', 'ade',
                                                                                'ADE_val_00000001.jpg')]


def join_checkpoint() -> str:
    """The checkpoint is shipped as two byte ranges (each under 10 MB); join them (again every run:
    a stale copy of an older checkpoint can have the same size)."""
    path = osp.join(WORK_DIR, 'vim_tiny_fashion_fp16.pth')
    os.makedirs(WORK_DIR, exist_ok=True)
    with open(path, 'wb') as out:
        for part in PARTS:
            with open(part, 'rb') as f:
                out.write(f.read())
    return path


def images_per_second(models: dict, inputs: torch.Tensor, rounds: int = 3) -> dict:
    """Forward throughput of each model on the same batch, measured in interleaved rounds."""
    times = {name: [] for name in models}
    with torch.no_grad():
        for model in models.values():  # warm-up
            model(inputs, mode='tensor')
        for _ in range(rounds):
            for name, model in models.items():
                start = time.perf_counter()
                model(inputs, mode='tensor')
                times[name].append(time.perf_counter() - start)
    return {name: len(inputs) / statistics.median(t) for name, t in times.items()}


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
    metrics, models = {}, {}
    for name, options in RUNS.items():
        args = [CONFIG, checkpoint, '--work-dir', osp.join(WORK_DIR, 'logs')]
        args += ['--cfg-options', *(f'{k}={v}' for k, v in options.items())] if options else \
            ['--show-dir', osp.join(WORK_DIR, 'show')]
        metrics[name] = run_test(args)
        models[name] = init_model(CONFIG, checkpoint, cfg_options=options)
    reference = next(iter(models.values()))
    dataset = DATASETS.build(reference.cfg.test_dataloader.dataset)
    inputs = reference.data_preprocessor(pseudo_collate([dataset[i] for i in range(8)]), False)['inputs']
    speed = images_per_second(models, inputs)
    pictures = [visualize(models['MTR -40% FLOPs'], image, WORK_DIR, test_pipeline(reference.cfg)) for image in PICTURES]

    print('\nMTR on Vim-T (Fashion-MNIST-on-photos checkpoint, 48 embedded test images, CPU, batch 8)')
    print(f'{"run":<16} {"top-1 %":>8} {"GFLOPs":>8} {"images/s":>9}')
    for name in RUNS:
        print(f'{name:<16} {metrics[name]["accuracy/top1"]:>8.2f} {metrics[name]["backbone_gflops"]:>8.3f} '
              f'{speed[name]:>9.2f}')
    base, mtr = RUNS
    print(f'MTR: {1 - metrics[mtr]["backbone_gflops"] / metrics[base]["backbone_gflops"]:.1%} fewer FLOPs, '
          f'{speed[mtr] / speed[base]:.2f}x images/s')
    print(f'token pictures: {osp.join(WORK_DIR, "show", "tokens")} (test images), ' + ', '.join(pictures))
    print(videomamba_line())


if __name__ == '__main__':
    main()
