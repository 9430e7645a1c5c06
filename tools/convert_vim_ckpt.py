"""Convert an official hustvl/Vim checkpoint to this project's (mmengine) layout.

    python tools/convert_vim_ckpt.py vim_t_midclstok_76p1acc.pth vim_tiny_in1k.pth
    python tools/convert_vim_ckpt.py IN OUT --to dense --img-size 512   # backbone for seg/det

The input is read with weights_only=True and an allow-list (argparse.Namespace for the official
'args'); ``--trusted`` unpickles anything and is only for files you made yourself. ``--key`` picks
'model' (default: what the official evaluation uses) or 'model_ema'.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

import torch  # noqa: E402

from mtr_mm import checkpoint as ckpt  # noqa: E402
from tools import cli  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('src', help='official checkpoint')
    parser.add_argument('dst', help='output file')
    parser.add_argument('--key', choices=['model', 'model_ema'], default='model')
    parser.add_argument('--to', choices=['cls', 'dense'], default='cls',
                        help="'cls': a whole ImageClassifier; 'dense': backbone weights without cls token")
    parser.add_argument('--img-size', type=int, default=512, help='dense: input size the pos embed is resized to')
    parser.add_argument('--patch-size', type=int, default=16)
    parser.add_argument('--stride', type=int, default=16)
    parser.add_argument('--trusted', action='store_true', help='unpickle anything (only for your own files)')
    return parser.parse_args(argv)


def convert(args) -> dict:
    checkpoint = ckpt.load_file(args.src, trusted=args.trusted)
    key = args.key if isinstance(checkpoint, dict) and args.key in checkpoint else None
    state_dict = ckpt.extract_state_dict(checkpoint, key)
    if not ckpt.is_official_vim(state_dict):
        raise ckpt.CheckpointError(f'{args.src!r} is not an official Vim checkpoint: it lacks '
                                   f'{[k for k in ckpt.OFFICIAL_MARKERS if k not in state_dict]}')
    if args.to == 'cls':
        converted = ckpt.official_to_classifier(state_dict)
    else:
        side = (args.img_size - args.patch_size) // args.stride + 1
        converted = {'backbone.vim.' + k: v for k, v in ckpt.official_to_dense(state_dict, (side, side)).items()}
    meta = dict(source=osp.basename(args.src), key=key or 'model', layout=args.to)
    return dict(state_dict=converted, meta=meta)


def main(argv=None):
    args = parse_args(argv)
    result = convert(args)
    torch.save(result, args.dst)
    print(f'wrote {len(result["state_dict"])} tensors to {args.dst} ({args.to} layout)')


if __name__ == '__main__':
    cli.run(main)
