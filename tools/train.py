"""Train or fine-tune a config with mmengine's Runner (e.g. a dense head on a frozen or trainable
Vim backbone initialised from an official checkpoint through the backbone's init_cfg).

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp] [--cfg-options k=v ...]
                          [--launcher none|pytorch|slurm|mpi]
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a checkout without install

from mmengine.runner import Runner  # noqa: E402

from mtr_mm.apis import close_distributed, init_cpu_distributed  # noqa: E402
from mtr_mm.apis.runner import parse_runner_args, runner_config  # noqa: E402
from tools import cli  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Train a Vim / MTR model')
    parser.add_argument('config', help='config file')
    parser.add_argument('--work-dir', help='where logs and checkpoints go (default ./work_dirs/CONFIG_NAME)')
    parser.add_argument('--resume', nargs='?', const='auto', help='resume from CKPT, or the latest in work-dir')
    parser.add_argument('--amp', action='store_true', help='automatic mixed precision')
    return parse_runner_args(parser, argv)


def main(argv=None):
    args = parse_args(argv)
    cfg = runner_config(args)
    if 'train_dataloader' not in cfg:
        raise ValueError(f'{args.config} has no train_dataloader: it is an evaluation-only config')
    if args.amp:
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    if args.resume == 'auto':
        cfg.resume, cfg.load_from = True, None
    elif args.resume:
        cfg.resume, cfg.load_from = True, args.resume
    init_cpu_distributed(cfg)
    runner = Runner.from_cfg(cfg)
    runner.train()
    close_distributed()


if __name__ == '__main__':
    cli.run(main)
