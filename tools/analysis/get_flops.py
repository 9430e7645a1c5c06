"""FLOPs of a config's Vim / VideoMamba backbone, layer by layer, with the live token count of its reduction.

    python tools/analysis/get_flops.py CONFIG [--shape H W] [--frames T] [--cfg-options k=v ...]

Multiply-accumulates, analytic (mtr_mm/reduction/flops.py), for one image or one video view. Three
conventions are printed, labelled: one scan direction (the number Vim papers quote: Vim-T 1.45 G),
both directions, and projections only (in_proj + out_proj + patch embed + head, no scan: the number
VideoMamba's model zoo quotes, VideoMamba-Ti 1.1 G). For segmentation and detection models the neck
and heads are counted with mmengine's FLOP analyzer on the backbone's output maps.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

import torch  # noqa: E402
from mmengine.config import DictAction  # noqa: E402

from mtr_mm.apis import build_model  # noqa: E402
from mtr_mm.engine.hooks import find_vim  # noqa: E402
from tools import cli  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Per-layer FLOPs of a Vim config')
    parser.add_argument('config')
    parser.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'),
                        help='input size (default: the backbone img_size)')
    parser.add_argument('--frames', type=int, help='video models: frames per view (default: the backbone num_frames)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, help='override config keys, k=v')
    return parser.parse_args(argv)


def head_flops(model, shape):
    """Neck + dense head by mmengine's analyzer on the backbone outputs: the decode head of a
    segmentor, the RPN of a detector (its ROI heads depend on the proposals and are not counted).
    None for classifiers, whose linear head is part of the backbone count."""
    if not hasattr(model, 'decode_head') and not hasattr(model, 'rpn_head'):
        return None
    from mmengine.analysis import FlopAnalyzer
    with torch.no_grad():
        feats = model.backbone(torch.zeros(1, 3, *shape))

    class DenseHeads(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, *maps):
            x = self.model.neck(maps) if getattr(self.model, 'with_neck', False) else maps
            if hasattr(self.model, 'decode_head'):
                return self.model.decode_head(x)
            return self.model.rpn_head(x)

    analyzer = FlopAnalyzer(DenseHeads(), feats)
    analyzer.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    return analyzer.total()


def main(argv=None):
    args = parse_args(argv)
    # FLOPs do not depend on the weights: the model is built without its init (no Pretrained file needed).
    model = build_model(args.config, args.cfg_options).eval()
    vim = find_vim(model)
    if vim is None:
        raise SystemExit(f'{args.config} has no Vim backbone')
    shape = tuple(args.shape) if args.shape else tuple(s * vim.patch_embed.stride + vim.patch_embed.patch_size
                                                       - vim.patch_embed.stride for s in vim.pos_grid[-2:])
    frames = (args.frames or vim.num_frames, ) if vim.num_frames else ()
    if args.frames and not vim.num_frames:
        raise SystemExit('--frames: this is an image model (its backbone has no num_frames)')
    grid = vim.patch_embed.grid_size(*frames, *shape)
    one, both, full = vim.flops(grid, 1), vim.flops(grid, 2), vim.flops(grid, 1, reduced=False)
    zoo, zoo_full = vim.flops(grid, 0), vim.flops(grid, 0, reduced=False)
    clip = f'{frames[0]} frames x ' if frames else ''
    print(f'config: {args.config}\ninput: {clip}{shape[0]}x{shape[1]}  grid: {"x".join(map(str, grid))}  '
          f'reduction: {vim.reduction}')
    print(f'{"layer":>5} {"tokens":>6} {"GFLOPs 1-dir":>13} {"GFLOPs 2-dir":>13} {"overhead":>10}')
    for i, (tokens, a, b, extra) in enumerate(zip(one.tokens, one.layers, both.layers, one.overhead)):
        print(f'{i:>5} {tokens:>6} {a / 1e9:>13.4f} {b / 1e9:>13.4f} {extra / 1e9:>10.5f}')
    print(f'{"stem+head":>12} {one.stem_head / 1e9:>13.4f}')
    print(f'backbone total, one scan direction (papers\' convention): {one.total / 1e9:.3f} G '
          f'(unreduced {full.total / 1e9:.3f} G, {1 - one.total / full.total:.1%} fewer)')
    print(f'backbone total, both scan directions:                    {both.total / 1e9:.3f} G')
    print(f'projections only, no scan (VideoMamba zoo convention):   {zoo.total / 1e9:.3f} G '
          f'(unreduced {zoo_full.total / 1e9:.3f} G)')
    heads = head_flops(model, shape)
    if heads is not None:
        print(f'neck + decode head / RPN (mmengine FlopAnalyzer):        {heads / 1e9:.3f} G')
        print(f'model total (one direction + heads):                     {(one.total + heads) / 1e9:.3f} G')


if __name__ == '__main__':
    cli.run(main)
