"""VideoMamba through the one Vim forward: official-layout checkpoints (image and video) load strictly
and give the logits of an independent float64 reference (tests/reference_videomamba.py); every
reducer on space-time tokens; FLOPs in both conventions."""
import math

import pytest
import torch

from mtr_mm import checkpoint as ckpt
from mtr_mm.models import VIM_ARCH, VisionMamba, vim_arch
from mtr_mm.reduction.base import REDUCERS
from reference_videomamba import reference_videomamba_forward, videomamba_state_dict

VIDEOMAMBA = dict(cls_token_position='front', direction_merge='sum')
SMALL = dict(img_size=32, embed_dims=32, depth=3, num_classes=5)   # 2x2 patches per frame
FRAMES = 4
METHODS = sorted(REDUCERS.module_dict)


def small_model(num_frames=FRAMES, reduction=None):
    return VisionMamba(**SMALL, **VIDEOMAMBA, num_frames=num_frames, reduction=reduction).eval()


def loaded(num_frames=FRAMES, reduction=None, seed=0):
    state_dict = videomamba_state_dict(32, 3, 32, 5, num_frames=num_frames, seed=seed)
    model = small_model(num_frames, reduction)
    model.load_state_dict(state_dict, strict=True)
    return model, state_dict


def clips(batch=2, frames=FRAMES, seed=1):
    return torch.randn(batch, 3, frames, 32, 32, generator=torch.Generator().manual_seed(seed))


def rel_err(a, b):
    return ((a.double() - b.double()).abs().max() / b.double().abs().max()).item()


@pytest.mark.parametrize('arch,params', [('videomamba_tiny', 7_148_008), ('videomamba_small', 25_796_584),
                                         ('videomamba_middle', 74_217_448), ('videomamba_base', 97_598_440)])
def test_image_sizes_have_the_official_parameter_counts(arch, params):
    with torch.device('meta'):
        model = VisionMamba(**vim_arch(arch))
    assert sum(p.numel() for p in model.parameters()) == params
    assert VIM_ARCH[arch]['cls_token_position'] == 'front' and VIM_ARCH[arch]['direction_merge'] == 'sum'


@pytest.mark.parametrize('num_frames', [0, FRAMES], ids=['image', 'video'])
def test_official_checkpoint_loads_strictly_and_gives_the_reference_logits(tmp_path, num_frames):
    """Image files: weights under 'model' with the self-distillation head (dropped); video files:
    a bare state dict with temporal_pos_embedding and a 5-D patch embedding."""
    state_dict = videomamba_state_dict(32, 3, 32, 5, num_frames=num_frames, distill=not num_frames)
    path = tmp_path / 'official.pth'
    torch.save(dict(model=state_dict) if not num_frames else state_dict, path)
    loaded_sd = ckpt.drop_distill_head(ckpt.extract_state_dict(ckpt.load_file(str(path))))
    assert not any(k.startswith('distill_head.') for k in loaded_sd)
    model = small_model(num_frames)
    assert list(model.state_dict()) == list(loaded_sd)  # the official key order
    ckpt.load_into(model, loaded_sd, 'VideoMamba')
    inputs = clips() if num_frames else clips()[:, :, 0]
    expected = reference_videomamba_forward(state_dict, inputs)
    with torch.no_grad():  # the model computes in fp32 (its residual stream and norms are fp32 by design)
        assert rel_err(model(inputs), expected) < 1e-5


def test_vim_semantics_would_give_other_logits():
    """The reference check has teeth: middle class token or averaged directions change the output."""
    model, state_dict = loaded()
    inputs = clips()
    expected = reference_videomamba_forward(state_dict, inputs)
    for wrong in (dict(direction_merge='mean'), dict(cls_token_position='middle')):
        other = VisionMamba(**SMALL, **{**VIDEOMAMBA, **wrong}, num_frames=FRAMES).eval()
        other.load_state_dict(state_dict)
        with torch.no_grad():
            assert rel_err(other(inputs), expected) > 1e-2


def test_checkpoint_of_another_shape_is_refused_by_name(tmp_path):
    image = videomamba_state_dict(32, 3, 32, 5)
    with pytest.raises(ckpt.CheckpointError, match='missing .*temporal_pos_embedding'):
        ckpt.load_into(small_model(), image, 'VideoMamba video model')
    video = videomamba_state_dict(32, 3, 32, 5, num_frames=8)
    with pytest.raises(ckpt.CheckpointError, match=r'temporal_pos_embedding: checkpoint \(1, 8, 32\) vs model \(1, 4, 32\)'):
        ckpt.load_into(small_model(), video, 'VideoMamba video model')


def test_bad_inputs_and_arguments_are_named():
    model, _ = loaded()
    with pytest.raises(ValueError, match='clips .B, C, T, H, W., got a 4-D input'):
        model(torch.randn(1, 3, 32, 32))
    with pytest.raises(ValueError, match='embeds 4 frames .* got a clip of 2 frames'):
        model(clips(frames=2))
    with pytest.raises(ValueError, match="cls_token_position must be 'middle'"):
        VisionMamba(**SMALL, cls_token_position='back')
    with pytest.raises(ValueError, match="direction_merge must be 'mean'"):
        VisionMamba(**SMALL, direction_merge='max')
    with pytest.raises(ValueError, match='multiple of tubelet_size=2'):
        VisionMamba(**SMALL, num_frames=3, tubelet_size=2)


def test_tokens_are_frame_major_with_the_class_token_in_front():
    model, state_dict = loaded()
    inputs = clips(batch=1)
    state = model.embed(inputs)
    assert state.grid_size == (FRAMES, 2, 2) and state.cls_position == 0 and state.num_tokens == 1 + FRAMES * 4
    sd = {k: v.double() for k, v in state_dict.items()}
    t, h, w = 2, 1, 0  # token 1 + 4t + 2h + w: patch (h, w) of frame t
    patch = inputs.double()[0, :, t, 16 * h:16 * h + 16, 16 * w:16 * w + 16]
    embedded = (sd['patch_embed.proj.weight'][:, :, 0] * patch).sum((1, 2, 3)) + sd['patch_embed.proj.bias']
    expected = embedded + sd['pos_embed'][0, 1 + 2 * h + w] + sd['temporal_pos_embedding'][0, t]
    assert torch.allclose(state.hidden[0, 1 + 4 * t + 2 * h + w].double(), expected, atol=1e-5)
    assert torch.allclose(state.hidden[0, 0].double(), sd['cls_token'][0, 0] + sd['pos_embed'][0, 0])


@pytest.mark.parametrize('method', METHODS)
def test_every_reducer_is_bit_exact_at_r0_on_video(method):
    model, state_dict = loaded()
    reduced = small_model(reduction=dict(method=method, schedule=dict(layers=[0, 1], r=0)))
    reduced.load_state_dict(state_dict)
    inputs = clips()
    with torch.no_grad():
        assert torch.equal(reduced(inputs), model(inputs))


@pytest.mark.parametrize('method', METHODS)
def test_every_reducer_reduces_space_time_tokens(method):
    """Tokens leave as scheduled, the class token is still the one read, order-preserving methods
    keep the frame-major order, and each clip of a batch is reduced as if it were alone."""
    model, _ = loaded(reduction=dict(method=method, schedule=dict(layers=[0, 1], r=3)))
    seen = []
    model.token_observers.append(lambda index, state: seen.append(state))
    inputs = clips(batch=3)
    with torch.no_grad():
        batched = model(inputs)
        assert [s.num_tokens for s in seen] == [14, 11]
        for state in seen:
            assert torch.equal(state.positions.gather(1, state.cls_index[:, None]), torch.zeros(3, 1, dtype=torch.long))
            if model.reduction.reducer.preserves_order:
                assert torch.equal(state.positions, state.positions.sort(1).values)
        alone = torch.cat([model(inputs[i:i + 1]) for i in range(3)])
    assert torch.allclose(batched, alone, rtol=1e-5, atol=1e-6)


def test_flops_in_both_conventions():
    """Images at 224: VideoMamba's zoo convention (projections + patch embed + head, no scan)
    reproduces its published 1.1 / 4.3 / 12.7 / 16.9 G; video views: 1 + 196 T tokens."""
    published = dict(videomamba_tiny=1.07, videomamba_small=4.24, videomamba_middle=12.64, videomamba_base=16.85)
    for arch, gflops in published.items():
        with torch.device('meta'):
            model = VisionMamba(**vim_arch(arch))
        assert round(model.flops((14, 14), directions=0).total / 1e9, 2) == gflops
    # per view at 8 and 16 frames: zoo convention / one direction / both directions (reference doc)
    expected = {('videomamba_tiny', 8): (8.6, 11.5, 14.5), ('videomamba_small', 16): (67.5, 80.8, 94.1),
                ('videomamba_middle', 8): (100.6, 115.3, 130.0)}
    for (arch, frames), numbers in expected.items():
        with torch.device('meta'):
            model = VisionMamba(**vim_arch(arch, num_frames=frames, num_classes=400))
        grid = model.patch_embed.grid_size(frames, 224, 224)
        assert grid == (frames, 14, 14) and model.flops(grid).tokens[0] == 1 + 196 * frames
        assert tuple(round(model.flops(grid, d).total / 1e9, 1) for d in (0, 1, 2)) == numbers


def test_schedule_is_solved_for_the_video_token_count():
    reduction = dict(method='mtr', schedule=dict(layers=[6, 9, 12, 15, 18], flops_reduction=0.4))
    with torch.device('meta'):
        model = VisionMamba(**vim_arch('videomamba_tiny', num_frames=8, num_classes=400, reduction=reduction))
    grid = model.pos_grid
    assert grid == (8, 14, 14)
    removed = model.removed_per_layer(grid)
    assert sum(removed) > 600  # of 1568 patch tokens
    for directions in (1, 2):
        achieved = 1 - model.flops(grid, directions).total / model.flops(grid, directions, reduced=False).total
        assert achieved == pytest.approx(0.4, abs=0.01) if directions == 1 else achieved > 0.35
    assert math.prod(grid) + 1 == model.flops(grid).tokens[0]


def test_backbones_for_video():
    from mtr_mm.models import VideoMambaBackbone, VimBackbone
    backbone = VideoMambaBackbone(arch='videomamba_tiny', embed_dims=32, depth=2, img_size=32, num_frames=2).eval()
    with torch.no_grad():
        features = backbone(torch.randn(3, 3, 2, 32, 32))
    assert isinstance(features, torch.Tensor) and features.shape == (3, 32)  # one tensor, for TimeSformerHead
    with pytest.raises(ValueError, match='video models .num_frames. output "cls"'):
        VimBackbone(arch='videomamba_tiny', out_type='featmap', num_frames=8)


def test_tubelets_of_two_frames():
    """tubelet_size=2: a Conv3d over frame pairs, T/2 temporal positions, FLOPs of the 2x larger kernel."""
    model = VisionMamba(**SMALL, **VIDEOMAMBA, num_frames=4, tubelet_size=2).eval()
    assert model.patch_embed.proj.weight.shape == (32, 3, 2, 16, 16)
    assert model.temporal_pos_embedding.shape == (1, 2, 32) and model.pos_grid == (2, 2, 2)
    with torch.no_grad():
        state = model.embed(clips(batch=1))
        assert state.num_tokens == 1 + 2 * 4 and model(clips()).shape == (2, 5)
    per_token = 3 * 2 * 16 * 16 * 32
    assert model.flops((2, 2, 2)).stem_head == 8 * per_token + 32 * 5
