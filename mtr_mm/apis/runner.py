"""What tools/test.py and tools/train.py share: the common command-line arguments, the config
they hand to mmengine's Runner, and the check that an output path can be written."""
import argparse
import os
import os.path as osp

from mmengine.config import Config, DictAction

from . import load_config, task_library


def add_runner_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, help='override config keys, k=v')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    return parser


def parse_runner_args(parser: argparse.ArgumentParser, argv=None) -> argparse.Namespace:
    args = add_runner_arguments(parser).parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))  # torchrun sets it; older launchers pass --local_rank
    return args


def runner_config(args: argparse.Namespace) -> Config:
    """The config with --cfg-options applied, its library registered, the launcher and the work dir
    (--work-dir, else the config's, else ./work_dirs/CONFIG_NAME) set and checked writable."""
    cfg = load_config(args.config, args.cfg_options)
    task_library(cfg)
    cfg.launcher = args.launcher
    cfg.work_dir = args.work_dir or cfg.get('work_dir') or osp.join(
        './work_dirs', osp.splitext(osp.basename(args.config))[0])
    check_writable(cfg.work_dir, '--work-dir', folder=True)
    return cfg


def check_writable(path: str, what: str, folder: bool):
    """Fail before a long run, not after it, when an output path cannot be written."""
    path = osp.abspath(path)
    if osp.exists(path) and osp.isdir(path) != folder:
        raise ValueError(f'{what} {path} exists and is a {"file" if folder else "folder"}; give a '
                         f'{"folder" if folder else "file"} path')
    existing = path if folder else osp.dirname(path)
    while not osp.exists(existing):
        existing = osp.dirname(existing)
    if not osp.isdir(existing):
        raise ValueError(f'{what} {path} cannot be created: {existing} is a file. Choose another path.')
    if not os.access(existing, os.W_OK):
        raise ValueError(f'{what} {path} cannot be created: {existing} is not writable. Choose another path.')
