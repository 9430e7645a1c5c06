"""Which tokens survive each reduction step, for any reducer, on your own images.

    python tools/visualize_tokens.py CONFIG CHECKPOINT IMAGE [IMAGE ...] --out-dir DIR
                                     [--cfg-options model.backbone.reduction.method=tome]
    python tools/visualize_tokens.py CONFIG IMAGE [IMAGE ...] --out-dir DIR --random-weights

One PNG per image: the input as the network sees it (after the config's test pipeline), then per
reducing layer the surviving patches, merged patches tinted by group (outlined: the token that
absorbed them) and pruned patches darkened; for segmentation/detection models also the restored
feature map of the last output next to the unreduced one (PCA colours, shared basis).
"""
import argparse
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

import mmcv  # noqa: E402
import torch  # noqa: E402
from mmcv.transforms import Compose  # noqa: E402
from mmengine.config import DictAction  # noqa: E402
from mmengine.dataset import pseudo_collate  # noqa: E402

from mtr_mm.apis import init_model  # noqa: E402
from mtr_mm.apis.runner import check_writable  # noqa: E402
from mtr_mm.engine.hooks import find_vim  # noqa: E402
from mtr_mm.visualization import TokenRecorder, render_token_panels  # noqa: E402
from tools import cli  # noqa: E402

CHECKPOINT_SUFFIXES = ('.pth', '.pt', '.ckpt', '.bin')
CHECKPOINT_MAGIC = (b'PK\x03\x04', b'\x80')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Visualise token reduction')
    parser.add_argument('config')
    parser.add_argument('inputs', nargs='+', metavar='CHECKPOINT IMAGE', help='the checkpoint, then images')
    parser.add_argument('--out-dir', required=True)
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--random-weights', action='store_true',
                        help='no checkpoint: show what a randomly initialised model does (on purpose)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, help='override config keys, k=v')
    args = parser.parse_args(argv)
    args.checkpoint = args.inputs[0] if is_checkpoint(args.inputs[0]) else None
    args.images = args.inputs[1:] if args.checkpoint else args.inputs
    if not args.checkpoint and not args.random_weights:
        parser.error(f'{args.inputs[0]} is not a checkpoint, and without one the pictures would show random '
                     'weights. Give the checkpoint first, then the images (or --random-weights, on purpose)')
    if not args.images:
        parser.error('give at least one image after the checkpoint')
    for image in args.images:
        problem = image_problem(image)
        if problem:
            parser.error(f'image {image}: {problem}')
    check_writable(args.out_dir, '--out-dir', folder=True)
    return args


def is_checkpoint(path: str) -> bool:
    """By name, or by content: torch.save writes a zip archive (older files: a pickle)."""
    if path.endswith(CHECKPOINT_SUFFIXES):
        return True
    if not osp.isfile(path):
        return False
    with open(path, 'rb') as f:
        return f.read(4).startswith(CHECKPOINT_MAGIC)


def image_problem(path: str):
    """Why ``path`` cannot be drawn, or None."""
    if not osp.isfile(path):
        return 'does not exist'
    if osp.getsize(path) == 0:
        return 'is an empty file (0 bytes)'
    if is_checkpoint(path):
        return 'is a checkpoint, not an image; give the checkpoint once, first, before the images'
    with open(path, 'rb') as f:
        if mmcv.imfrombytes(f.read()) is None:
            return 'is not an image file that OpenCV can read (jpg, png, bmp, ...)'
    return None


def test_pipeline(cfg):
    """The config's test pipeline without annotation loading (we only have images)."""
    steps = [t for t in cfg.test_dataloader.dataset.pipeline if 'Annotations' not in t['type']]
    return Compose(steps)


def display_image(model, inputs: torch.Tensor):
    """Undo the data preprocessor's normalisation: (1, 3, H, W) -> (H, W, 3) RGB in [0, 1]."""
    pre = model.data_preprocessor
    image = inputs[0] * pre.std + pre.mean if getattr(pre, '_enable_normalize', True) else inputs[0]
    return (image / 255).clamp(0, 1).permute(1, 2, 0).cpu().numpy()


def visualize(model, image_path: str, out_dir: str, pipeline) -> str:
    vim = find_vim(model)
    batch = model.data_preprocessor(pseudo_collate([pipeline(dict(img_path=image_path))]), False)
    inputs = batch['inputs']
    with torch.no_grad(), TokenRecorder(vim) as recorder:
        outputs = model.backbone(inputs)
    feature_maps = None
    if vim.reduction is not None and not vim.with_cls_token:  # dense: restored vs unreduced features
        reduction, vim.reduction = vim.reduction, None
        with torch.no_grad():
            unreduced = model.backbone(inputs)
        vim.reduction = reduction
        feature_maps = {f'restored ({reduction.restore})': outputs[-1][0].float().cpu().numpy(),
                        'unreduced': unreduced[-1][0].float().cpu().numpy()}
    method = type(vim.reduction.reducer).__name__.replace('Reducer', '') if vim.reduction else 'none'
    path = osp.join(out_dir, osp.splitext(osp.basename(image_path))[0] + '_tokens.png')
    render_token_panels(path, display_image(model, inputs), {i: l[0] for i, l in recorder.layers.items()},
                        vim.patch_embed.stride, method, feature_maps)
    return path


def main(argv=None):
    args = parse_args(argv)
    model = init_model(args.config, args.checkpoint, args.device, args.cfg_options)
    if find_vim(model) is None:
        raise SystemExit(f'{args.config} has no Vim backbone')
    if find_vim(model).num_frames:
        raise SystemExit(f'{args.config} is a video model: token pictures are drawn for image models')
    os.makedirs(args.out_dir, exist_ok=True)
    pipeline = test_pipeline(model.cfg)
    for image in args.images:
        print('wrote', visualize(model, image, args.out_dir, pipeline))


if __name__ == '__main__':
    cli.run(main)
