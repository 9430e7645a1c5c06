"""Dense Vim backbones: feature maps, restoration of reduced tokens, checkpoint adaptation, the
simple feature pyramid and the layer-decay optimizer constructor."""
import pytest
import torch
import torch.nn.functional as F
from mmengine.optim import build_optim_wrapper
from torch import nn

from mtr_mm import checkpoint as ckpt
from mtr_mm.engine.optim import vim_layer_id
from mtr_mm.models import SimpleFeaturePyramid, VimBackbone
from mtr_mm.reduction import REDUCERS
from mtr_mm.reduction.restore import RESTORE_MODES
from reference_vim import official_state_dict, save_official_checkpoint

METHODS = sorted(REDUCERS.module_dict)
OUT_INDICES = [0, 1, 2, 3]


def backbone(reduction=None, feature='hidden', **kwargs):
    """Depth 4, 64 dims: 4x6 grids on the 64x96 test images below."""
    torch.manual_seed(0)
    options = dict(arch='tiny', embed_dims=64, depth=4, img_size=64, out_type='featmap',
                   out_indices=OUT_INDICES, feature=feature, reduction=reduction)
    return VimBackbone(**{**options, **kwargs}).eval()


def mtr(restore='unmerge', layers=(0, 1, 2), r=4, **kwargs):
    return dict(method='mtr', schedule=dict(layers=list(layers), r=r), restore=restore, **kwargs)


@pytest.fixture(scope='module')
def images():
    return torch.randn(2, 3, 64, 96, generator=torch.Generator().manual_seed(0))


def run(model, images):
    with torch.no_grad():
        return model(images)


@pytest.mark.parametrize('method', METHODS)
def test_full_maps_at_every_out_index_for_every_reducer_and_restoration(images, method):
    assert [tuple(m.shape) for m in run(backbone(), images)] == [(2, 64, 4, 6)] * 4
    if method == 'evit':
        with pytest.raises(ValueError, match='EViT needs a class token'):
            backbone(dict(method=method, schedule=dict(layers=[0, 1, 2], r=3)))
        return
    for mode in RESTORE_MODES:  # 'block' features: restoration of both streams (hidden: the tests below)
        maps = run(backbone(dict(method=method, schedule=dict(layers=[0, 1, 2], r=3), restore=mode), 'block'), images)
        assert [tuple(m.shape) for m in maps] == [(2, 64, 4, 6)] * 4, mode
        assert all(torch.isfinite(m).all() for m in maps)


@pytest.mark.parametrize('feature', ['hidden', 'block'])
def test_zero_and_unmerge_differ_exactly_where_tokens_were_removed(images, feature):
    plain = backbone(feature=feature)
    zero, unmerge = backbone(mtr('zero'), feature), backbone(mtr('unmerge'), feature)
    zero.load_state_dict(plain.state_dict())
    unmerge.load_state_dict(plain.state_dict())
    zero_maps, unmerge_maps, plain_maps = run(zero, images), run(unmerge, images), run(plain, images)
    # the output of layer i is read before layer i's reduction: 4 tokens leave after layers 0, 1, 2
    for index, (z, u) in enumerate(zip(zero_maps, unmerge_maps)):
        removed = (z == 0).all(1)  # (B, H, W)
        assert removed.flatten(1).sum(1).tolist() == [4 * index] * 2
        kept = ~removed[:, None].expand_as(z)
        assert torch.equal(z[kept], u[kept])
        assert (u.abs().sum(1)[removed] > 0).all()  # unmerge fills them from their representative
    # nothing is removed before layer 0 reads its features
    assert torch.equal(zero_maps[0], plain_maps[0]) and torch.equal(unmerge_maps[0], plain_maps[0])


def test_stale_keeps_the_value_at_removal(images):
    plain, stale = backbone(), backbone(mtr('stale', layers=[0], r=5))
    stale.load_state_dict(plain.state_dict())
    plain_maps, stale_maps = run(plain, images), run(stale, images)
    stale.reduction.restore = 'zero'
    zero_map = run(stale, images)[1]
    removed = (zero_map == 0).all(1)
    assert removed.flatten(1).sum(1).tolist() == [5, 5]
    removed = removed[:, None].expand_as(zero_map)
    # tokens removed after layer 0 keep their layer-0 value (which no reduction has touched yet)
    assert torch.equal(stale_maps[1][removed], plain_maps[0][removed])
    assert torch.equal(stale_maps[1][~removed], zero_map[~removed])


def test_similarity_rebuilds_removed_positions_only(images):
    unmerge, similarity = backbone(mtr('unmerge')), backbone(mtr('similarity'))
    similarity.load_state_dict(unmerge.state_dict())
    unmerge.reduction.restore = 'zero'
    zero_maps, sim_maps = run(unmerge, images), run(similarity, images)
    for z, s in zip(zero_maps, sim_maps):
        kept = ~(z == 0).all(1)[:, None].expand_as(z)
        assert torch.equal(z[kept], s[kept])
        assert (s.abs().sum(1) > 0).all()


@pytest.mark.parametrize('method', METHODS)
def test_r_zero_gives_the_unreduced_features_for_every_restoration(images, method):
    plain_maps = run(backbone(), images)
    for mode in RESTORE_MODES:
        maps = run(backbone(dict(method=method, schedule=dict(layers=[0, 1, 2], r=0), restore=mode)), images)
        assert all(torch.equal(a, b) for a, b in zip(maps, plain_maps)), mode
        maps = run(backbone(dict(method=method, schedule=dict(layers=[0, 1], r=0), restore=mode,
                                 reactivate_at=2)), images)
        assert all(torch.equal(a, b) for a, b in zip(maps, plain_maps)), mode


def test_reactivate_runs_later_layers_at_full_length(images):
    model = backbone(mtr('unmerge', layers=[0, 1], r=4, reactivate_at=2))
    counts = []
    with torch.no_grad():
        model.vim.forward_blocks(model.vim.embed(images), lambda i, state: counts.append(state.num_tokens))
        maps = model(images)
    assert counts == [24, 20, 24, 24]
    assert [tuple(m.shape) for m in maps] == [(2, 64, 4, 6)] * 4
    # before reactivation the maps equal the plain reduced model's; afterwards they differ from it
    reduced = backbone(mtr('unmerge', layers=[0, 1], r=4))
    reduced_maps = run(reduced, images)
    assert torch.equal(maps[1], reduced_maps[1])
    assert not torch.allclose(maps[3], reduced_maps[3])


def test_bad_inputs_fail_clearly(images):
    with pytest.raises(ValueError, match="unknown restoration mode 'nearest'"):
        backbone(mtr('nearest'))
    with pytest.raises(ValueError, match='smaller than one 16x16 patch'):
        run(backbone(), images[:, :, :8, :8])


@pytest.mark.parametrize('img_size, grid', [(64, (4, 4)), (128, (8, 8))])
def test_pos_embed_from_a_classification_checkpoint_drops_the_middle_row(tmp_path, img_size, grid):
    official = official_state_dict(embed_dim=64, depth=2, img_size=64, num_classes=10, seed=3)
    path = tmp_path / 'vim_official.pth'
    save_official_checkpoint(path, official)
    model = backbone(depth=2, out_indices=[1], img_size=img_size,
                     init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    model.init_weights()
    pos = official['pos_embed']  # (1, 17, 64): 16 patches with the class token's row at index 8
    grid_rows = torch.cat([pos[:, :8], pos[:, 9:]], dim=1)
    expected = F.interpolate(grid_rows.reshape(1, 4, 4, 64).permute(0, 3, 1, 2), size=grid, mode='bicubic',
                             align_corners=False).flatten(2).transpose(1, 2)
    torch.testing.assert_close(model.vim.pos_embed.data, expected, rtol=0, atol=1e-6)
    if grid == (4, 4):
        assert torch.equal(model.vim.pos_embed.data[:, 0], pos[:, 0])  # row 0 is a patch, not the cls
    assert torch.equal(model.vim.layers[1].mixer.A_b_log, official['layers.1.mixer.A_b_log'])
    assert not hasattr(model.vim, 'cls_token')


def test_dense_backbone_starts_from_this_projects_classifier(tmp_path):
    """A classifier of this project (keys under backbone.vim., a class token, its head; the demo Vim-T
    that starts the Fashion segmenter) loads into a dense backbone as an official file does."""
    classifier = backbone(depth=2, out_type='cls', out_indices=[-1], img_size=64)
    state = {f'backbone.vim.{k}': v for k, v in classifier.vim.state_dict().items()}
    state['head.fc.weight'] = torch.randn(10, 64)
    path = tmp_path / 'vim_cls.pth'
    torch.save(dict(state_dict={k: v.bfloat16() for k, v in state.items()}, meta={}), path)  # as the demo's parts
    model = backbone(depth=2, out_indices=[1], img_size=128, init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    model.init_weights()
    vim = {k[len('backbone.vim.'):]: v.bfloat16() for k, v in state.items() if k.startswith('backbone.vim.')}
    expected = ckpt.official_to_dense(vim, (8, 8))['pos_embed'].float()
    torch.testing.assert_close(model.vim.pos_embed.data, expected, rtol=0, atol=0)
    assert torch.equal(model.vim.layers[1].mixer.in_proj.weight.data, vim['layers.1.mixer.in_proj.weight'].float())
    assert not hasattr(model.vim, 'cls_token')


def test_dense_backbone_rejects_the_wrong_size_checkpoint(tmp_path):
    path = tmp_path / 'vim_small.pth'
    save_official_checkpoint(path, official_state_dict(embed_dim=96, depth=2, img_size=64, num_classes=10))
    model = backbone(depth=2, out_indices=[1], init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    with pytest.raises(ckpt.CheckpointError, match=r'(?s)size mismatch.*arch tiny/small/base'):
        model.init_weights()


@pytest.mark.parametrize('norm_cfg', [dict(type='LN2d', eps=1e-6), dict(type='GN', num_groups=8)])
def test_simple_feature_pyramid_strides(norm_cfg):
    neck = SimpleFeaturePyramid(in_channels=64, out_channels=16, num_outs=5, norm_cfg=norm_cfg)
    outs = neck((torch.randn(2, 64, 8, 12), ))
    assert [tuple(o.shape) for o in outs] == [(2, 16, 32, 48), (2, 16, 16, 24), (2, 16, 8, 12), (2, 16, 4, 6),
                                              (2, 16, 2, 3)]
    assert len(SimpleFeaturePyramid(64, 16, scales=(2, 1), num_outs=2)((torch.randn(1, 64, 4, 4), ))) == 2
    with pytest.raises(ValueError, match='num_outs=7'):
        SimpleFeaturePyramid(64, 16, num_outs=7)


def test_layer_decay_constructor_groups_vim_parameters():
    model = nn.Module()
    model.backbone = backbone(depth=3, out_indices=[2])
    model.head = nn.Conv2d(64, 4, 1)
    wrapper = build_optim_wrapper(model, dict(
        optimizer=dict(type='AdamW', lr=1.0, weight_decay=0.05), constructor='VimLayerDecayOptimWrapperConstructor',
        paramwise_cfg=dict(decay_rate=0.5)))
    lr_and_wd = {}
    for group in wrapper.optimizer.param_groups:
        for param in group['params']:
            lr_and_wd[id(param)] = (group['lr'], group['weight_decay'])
    names = dict(model.named_parameters())
    vim = 'backbone.vim.'
    # stem: layer 0 -> 0.5 ** 4; layers.i -> 0.5 ** (3 - i); head and final norm: full lr
    assert lr_and_wd[id(names[vim + 'patch_embed.proj.weight'])] == (0.5**4, 0.05)
    assert lr_and_wd[id(names[vim + 'pos_embed'])] == (0.5**4, 0.)
    assert lr_and_wd[id(names[vim + 'layers.0.mixer.in_proj.weight'])] == (0.5**3, 0.05)
    assert lr_and_wd[id(names[vim + 'layers.2.mixer.A_b_log'])] == (0.5, 0.)
    assert lr_and_wd[id(names[vim + 'layers.2.mixer.D'])] == (0.5, 0.)
    assert lr_and_wd[id(names[vim + 'layers.1.norm.weight'])] == (0.25, 0.)
    assert lr_and_wd[id(names[vim + 'norm_f.weight'])] == (1.0, 0.)
    assert lr_and_wd[id(names['head.weight'])] == (1.0, 0.05)
    assert lr_and_wd[id(names['head.bias'])] == (1.0, 0.)
    assert len(lr_and_wd) == len(names)
    assert vim_layer_id('cls_token', 24) == 0 and vim_layer_id('layers.23.mixer.D', 24) == 24
    with pytest.raises(ValueError, match='num_layers=24 but the Vim backbone has depth 3'):
        build_optim_wrapper(model, dict(optimizer=dict(type='AdamW', lr=1.0),
                                        constructor='VimLayerDecayOptimWrapperConstructor',
                                        paramwise_cfg=dict(decay_rate=0.5, num_layers=24)))
