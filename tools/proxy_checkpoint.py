"""Move a proxy-training checkpoint (configs/proxy/, an mmengine checkpoint) through the GPU
machine's file limits: at most 8 files of 16 MiB come back from a call, 64 MiB in all.

    # the trained (EMA) weights only, floats in bf16, as parts: what evaluation needs
    python tools/proxy_checkpoint.py split work_dirs/vim_t/iter_3440.pth $OUT/vim_t --weights-only
    # the whole resumable state (weights, EMA, optimizer, schedulers), floats in bf16 (Vim-T: ~56 MB)
    python tools/proxy_checkpoint.py split work_dirs/vim_t/iter_1800.pth $OUT/vim_t
    # back into one file (tools/train.py --resume FILE, tools/test.py CONFIG FILE)
    python tools/proxy_checkpoint.py join vim_t.pth.part* --out work_dirs/vim_t/iter_1800.pth

After mmengine's EMAHook, a checkpoint's 'state_dict' holds the averaged weights (the model
trained in 'ema_state_dict'); --weights-only keeps 'state_dict' and 'meta'. A bf16 state resumes
(PyTorch casts the optimizer's state to the parameters' dtype) but is rounded: say so when used.
"""
import argparse
import io
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

import torch  # noqa: E402

from tools import cli  # noqa: E402

PART_BYTES = 15 * 2**20  # under the 16 MiB a file of $OUT may have


def cast_floats(value, dtype: torch.dtype):
    """``value`` with every floating-point tensor inside (dicts, lists, tuples) cast to ``dtype``."""
    if isinstance(value, torch.Tensor):
        return value.to(dtype) if value.is_floating_point() else value
    if isinstance(value, dict):
        return type(value)((k, cast_floats(v, dtype)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return type(value)(cast_floats(v, dtype) for v in value)
    return value


def slim_checkpoint(checkpoint: dict, weights_only: bool, dtype: torch.dtype) -> dict:
    kept = {k: checkpoint[k] for k in ('state_dict', 'meta')} if weights_only else checkpoint
    return cast_floats(kept, dtype)


def write_parts(data: bytes, prefix: str, part_bytes: int = PART_BYTES) -> list:
    """``prefix``.pth.part1, .part2, ... each at most ``part_bytes``."""
    paths = []
    for number, start in enumerate(range(0, len(data), part_bytes), 1):
        paths.append(f'{prefix}.pth.part{number}')
        with open(paths[-1], 'wb') as f:
            f.write(data[start:start + part_bytes])
    return paths


def part_number(path: str) -> int:
    return int(path.rsplit('.part', 1)[1])


def join_parts(paths: list, out: str) -> str:
    """Concatenate the parts in their numbered order (not the order given: part10 after part9)."""
    os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
    with open(out, 'wb') as f:
        for path in sorted(paths, key=part_number):
            with open(path, 'rb') as part:
                f.write(part.read())
    return out


def split(args):
    checkpoint = torch.load(args.checkpoint, map_location='cpu', weights_only=False)  # our own training's file
    buffer = io.BytesIO()
    torch.save(slim_checkpoint(checkpoint, args.weights_only, getattr(torch, args.dtype)), buffer)
    os.makedirs(osp.dirname(osp.abspath(args.prefix)), exist_ok=True)
    for path in write_parts(buffer.getvalue(), args.prefix, int(args.part_mib * 2**20)):
        print(path, osp.getsize(path))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    commands = parser.add_subparsers(dest='command', required=True)
    split_parser = commands.add_parser('split', help='cast and cut a checkpoint into parts')
    split_parser.add_argument('checkpoint')
    split_parser.add_argument('prefix', help='parts are PREFIX.pth.part1, ...')
    split_parser.add_argument('--weights-only', action='store_true', help="keep 'state_dict' (EMA) and 'meta'")
    split_parser.add_argument('--dtype', default='bfloat16', choices=['bfloat16', 'float16', 'float32'])
    split_parser.add_argument('--part-mib', type=float, default=PART_BYTES / 2**20)
    join_parser = commands.add_parser('join', help='join parts into one checkpoint')
    join_parser.add_argument('parts', nargs='+')
    join_parser.add_argument('--out', required=True)
    args = parser.parse_args(argv)
    if args.command == 'split':
        split(args)
    else:
        print(join_parts(args.parts, args.out))


if __name__ == '__main__':
    cli.run(main)
