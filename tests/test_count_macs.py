"""The analytic FLOPs report against the MACs counted on a real forward (tools/analysis/count_macs.py)."""
import glob
from pathlib import Path

import pytest
import torch

from tools.analysis.count_macs import backbone_from_config, check, counted_macs, matmul_macs, runs

REPO_ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted(glob.glob(f'{REPO_ROOT}/configs/mtr*/*.py') + glob.glob(f'{REPO_ROOT}/configs/mtr_vim_*.py')
                 + glob.glob(f'{REPO_ROOT}/configs/demo/*.py'))
NARROW = 16  # width of the checked backbones: the token counts and code paths are the config's own


def test_every_shipped_config_is_checked():
    assert len(SHIPPED) >= 25


@pytest.mark.parametrize('path', SHIPPED, ids=lambda p: p.split('configs/')[1])
def test_analytic_flops_match_the_counted_forward_of_every_shipped_config(path):
    backbone = backbone_from_config(path, embed_dims=NARROW)
    result = check(backbone, backbone.vim.reduction)
    assert abs(result['gap']) < 0.01, result


@pytest.mark.parametrize('path', ['configs/mtr/mtr_vim_tiny_in1k_r40.py',
                                  'configs/mtr_seg/mtr_vim_tiny_upernet_fashion_r40.py'])
def test_every_method_and_restoration_within_one_percent(path):
    backbone = backbone_from_config(f'{REPO_ROOT}/{path}', embed_dims=NARROW, img_size=224)
    names = []
    for name, reduction in runs(backbone, ['mtr', 'random', 'evit', 'tome', 'pumer', 'utr', 'hsa'],
                                ['unmerge', 'stale', 'zero', 'similarity']):
        result = check(backbone, reduction)
        assert abs(result['gap']) < 0.01, (name, result)
        names.append(name)
    dense = backbone.out_type == 'featmap'
    assert len(names) == (1 + 6 * 4 if dense else 1 + 7)     # EViT refuses dense backbones


def test_the_counter_counts_products_from_shapes():
    a, b = torch.randn(3, 5), torch.randn(5, 7)
    assert matmul_macs(torch.ops.aten.mm.default, (a, b), None) == 3 * 5 * 7
    assert matmul_macs(torch.ops.aten.bmm.default, (torch.randn(2, 3, 5), torch.randn(2, 5, 7)), None) == 2 * 3 * 5 * 7
    weight = torch.randn(8, 2, 3, 3)                          # groups=2 of a 4-channel input
    out = torch.nn.functional.conv2d(torch.randn(1, 4, 6, 6), weight, groups=2)
    assert matmul_macs(torch.ops.aten.convolution.default, (None, weight), out) == out.numel() * 2 * 9
    assert matmul_macs(torch.ops.aten.add.Tensor, (a, a), a) == 0


def test_a_missing_cost_would_be_caught():
    """Drop the similarity restoration from the analytic report (the former bug): the check fails."""
    backbone = backbone_from_config(f'{REPO_ROOT}/configs/mtr_seg/mtr_vim_tiny_upernet_fashion_r40.py',
                                    embed_dims=NARROW, img_size=224)
    backbone.vim.set_reduction(dict(method='mtr', schedule=dict(layers=[6, 9, 12, 15, 18], flops_reduction=0.4),
                                    restore='similarity'))
    images = torch.randn(1, 3, 224, 224)
    counted = counted_macs(backbone, images)
    report = backbone.vim.flops(backbone.vim.pos_grid, directions=2)
    assert abs((report.total - report.restoration) / counted - 1) > 0.01
    assert abs(report.total / counted - 1) < 0.01
