"""Independent FLOPs check: count the multiply-accumulates of a real forward and compare them with
the analytic report (``VisionMamba.flops``, mtr_mm/reduction/flops.py) that every log and table quotes.

    # every shipped MTR config, every method, every restoration mode of the dense ones
    python tools/analysis/count_macs.py configs/mtr/*.py configs/mtr_seg/*.py configs/mtr_det/*.py
    # narrower width for a quick run (the token counts and the code paths stay those of the config)
    python tools/analysis/count_macs.py configs/mtr_seg/mtr_vim_tiny_upernet_ade20k_r40.py --embed-dims 32

What is counted, on one image of the config's input size, both scan directions:

- every matrix product and convolution the forward dispatches (aten mm / addmm / bmm / baddbmm /
  convolution, MACs from the operand shapes): projections, patch embed, head, the reducers'
  similarity products, the similarity restoration's weights and weighted sums;
- the causal conv and the selective scan, from the shapes they are called with (their insides are
  not matrix products): conv L·E·K, scan 9·L·E·N + L·E (D skip) + L·E (z gate) per direction.

Elementwise work (norms, activations, score means, normalising before a cosine) is not counted; the
analytic report counts it for the reducers, so it is slightly higher. The check passes when the two
agree within 1 %.
"""
import argparse
import contextlib
import math
import os.path as osp
import sys
from unittest import mock

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

import torch  # noqa: E402
from mmengine.config import Config  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402

from mtr_mm.models import VimBackbone  # noqa: E402
from mtr_mm.models import vim as vim_module  # noqa: E402
from mtr_mm.reduction import REDUCERS, RESTORE_MODES  # noqa: E402
from tools.report_utils import shipped_layers  # noqa: E402

aten = torch.ops.aten
TOLERANCE = 0.01


def matmul_macs(func, args, out) -> int:
    """MACs of one dispatched matrix product or convolution (0 for any other op)."""
    if func is aten.mm.default:
        return args[0].shape[0] * args[0].shape[1] * args[1].shape[1]
    if func is aten.addmm.default:
        return args[1].shape[0] * args[1].shape[1] * args[2].shape[1]
    if func is aten.bmm.default:
        return math.prod(args[0].shape) * args[1].shape[-1]
    if func is aten.baddbmm.default:
        return math.prod(args[1].shape) * args[2].shape[-1]
    if func is aten.convolution.default:
        weight = args[1]
        return out.numel() * math.prod(weight.shape[1:])  # each output: (C_in / groups) x kernel MACs
    return 0


class MacCounter(TorchDispatchMode):
    """Adds up the MACs of the matrix products dispatched while active (not while paused)."""

    def __init__(self):
        super().__init__()
        self.macs = 0
        self._paused = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if not self._paused:
            self.macs += matmul_macs(func, args, out)
        return out

    @contextlib.contextmanager
    def paused(self):
        self._paused += 1
        try:
            yield
        finally:
            self._paused -= 1


@contextlib.contextmanager
def count_ops_by_shape(counter: MacCounter):
    """Count the causal conv and the selective scan of every Vim mixer from their call shapes, and
    keep their internals out of the dispatch count."""
    scan, conv = vim_module.selective_scan, vim_module.causal_conv1d

    def counted_scan(u, delta, A, B, C, D=None, z=None, **kwargs):
        tokens_x_channels = u.shape[0] * u.shape[1] * u.shape[2]
        counter.macs += 9 * tokens_x_channels * A.shape[1] + tokens_x_channels * ((D is not None) + (z is not None))
        with counter.paused():
            return scan(u, delta, A, B, C, D, z, **kwargs)

    def counted_conv(x, weight, bias=None, **kwargs):
        counter.macs += x.numel() * weight.shape[-1]
        with counter.paused():
            return conv(x, weight, bias, **kwargs)

    with mock.patch.object(vim_module, 'selective_scan', counted_scan), \
            mock.patch.object(vim_module, 'causal_conv1d', counted_conv):
        yield


def counted_macs(backbone: VimBackbone, images: torch.Tensor) -> int:
    """MACs of one backbone forward on ``images``, counted as the module docstring says."""
    counter = MacCounter()
    with torch.no_grad(), count_ops_by_shape(counter), counter:
        backbone(images)
    return counter.macs


def backbone_from_config(path: str, **overrides) -> VimBackbone:
    """The config's Vim backbone (random weights: MACs do not depend on them), with keyword
    overrides (``embed_dims=32`` for a faster check)."""
    options = {k: v for k, v in Config.fromfile(path).model.backbone.items() if k not in ('type', 'init_cfg')}
    torch.manual_seed(0)
    return VimBackbone(**{**options, **{k: v for k, v in overrides.items() if v is not None}}).eval()


def check(backbone: VimBackbone, reduction) -> dict:
    """Analytic and counted MACs of one image (or clip) of the backbone's stored input size."""
    vim = backbone.vim
    vim.set_reduction(reduction)
    embed = vim.patch_embed
    *tubelets, height, width = vim.pos_grid
    size = [g * embed.stride + embed.patch_size - embed.stride for g in (height, width)]
    frames = [t * embed.tubelet_size for t in tubelets]  # video: (T, H, W) clips
    images = torch.randn(1, 3, *frames, *size, generator=torch.Generator().manual_seed(0))
    analytic = vim.flops(vim.pos_grid, directions=2).total
    counted = counted_macs(backbone, images)
    return dict(analytic=analytic, counted=counted, gap=analytic / counted - 1)


def runs(backbone: VimBackbone, methods, restores):
    """(name, reduction) for every method (and restoration mode of a dense backbone) at the
    config's schedule; methods a backbone cannot run (EViT without a class token) are left out."""
    configured = backbone.vim.reduction
    dense = backbone.out_type == 'featmap'
    schedule = dict(layers=configured.schedule.layers, flops_reduction=configured.schedule.flops_reduction) \
        if configured is not None else dict(layers=shipped_layers(dense), flops_reduction=0.4)
    yield 'none', None
    for method in methods:
        if method == 'evit' and dense:
            continue
        for restore in (restores if dense else ['unmerge']):
            yield f'{method} {restore}' if dense else method, dict(method=method, schedule=schedule, restore=restore)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('configs', nargs='+')
    parser.add_argument('--methods', nargs='+', default=sorted(REDUCERS.module_dict))
    parser.add_argument('--restores', nargs='+', default=list(RESTORE_MODES), choices=RESTORE_MODES)
    parser.add_argument('--embed-dims', type=int, help='override the width (faster; same token counts)')
    return parser.parse_args(argv)


def main(argv=None) -> list:
    args = parse_args(argv)
    rows = []
    print(f'{"config":<48} {"run":<20} {"analytic G":>10} {"counted G":>10} {"gap":>7}')
    for path in args.configs:
        backbone = backbone_from_config(path, embed_dims=args.embed_dims)
        for name, reduction in runs(backbone, args.methods, args.restores):
            row = dict(config=osp.basename(path), run=name, **check(backbone, reduction))
            rows.append(row)
            print(f'{row["config"]:<48} {name:<20} {row["analytic"] / 1e9:>10.4f} {row["counted"] / 1e9:>10.4f} '
                  f'{row["gap"]:>+7.2%}', flush=True)
    worst = max(rows, key=lambda r: abs(r['gap']))
    print(f'largest gap: {worst["gap"]:+.2%} ({worst["config"]}, {worst["run"]}); tolerance {TOLERANCE:.0%}')
    if abs(worst['gap']) > TOLERANCE:
        raise SystemExit(1)
    return rows


if __name__ == '__main__':
    main()
