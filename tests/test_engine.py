"""The reduction engine inside the Vim forward: FLOPs counter, schedules, and the model-level
promises every reducer keeps (r=0 exactness, token counts, cls tracking, batch invariance)."""
import pytest
import torch
import torch.nn.functional as F

from mtr_mm.models import VisionMamba, vim_arch
from mtr_mm.reduction import REDUCERS, TokenReduction, VimDims, vim_flops
from test_ops import reference_scan

METHODS = sorted(REDUCERS.module_dict)
# The shipped MTR layer sets (configs/_base_/reductions/: classification, dense) and the one before them.
LAYER_SETS = ([5, 9, 13, 17, 21], [4, 8, 12, 16, 20], [6, 9, 12, 15, 18])
DIMS = {'tiny': VimDims(192, 24, dt_rank=12), 'small': VimDims(384, 24, dt_rank=24),
        'base': VimDims(768, 24, dt_rank=48)}


@pytest.mark.parametrize('arch, one_dir, two_dir', [('tiny', 1.45, 1.82), ('small', 5.08, 5.91),
                                                    ('base', 18.87, 20.89)])
def test_flops_counter_matches_published_numbers(arch, one_dir, two_dir):
    assert vim_flops(DIMS[arch], 196, 197).total / 1e9 == pytest.approx(one_dir, rel=0.01)
    assert vim_flops(DIMS[arch], 196, 197, directions=2).total / 1e9 == pytest.approx(two_dir, rel=0.01)


def test_flops_counter_against_hand_count_of_one_layer():
    dims = VimDims(8, 1, d_state=2, d_conv=3, expand=2, dt_rank=1, patch_size=2, in_channels=1, num_classes=5)
    L, C, E, N, R, K = 3, 8, 16, 2, 1, 3
    per_direction = L * E * K + L * E * (R + 2 * N) + L * R * E + 9 * L * E * N + 2 * L * E
    expected = 3 * L * C * E + per_direction + 2 * 1 * 4 * C + C * 5  # + patch embed of 2 patches + head
    assert vim_flops(dims, 2, L).total == expected


@pytest.mark.parametrize('method', METHODS)
@pytest.mark.parametrize('arch', ['tiny', 'small', 'base'])
@pytest.mark.parametrize('target', [0.2, 0.3, 0.4])
@pytest.mark.parametrize('layers', LAYER_SETS)
def test_target_schedule_reaches_flops_reduction(method, arch, target, layers):
    reduction = TokenReduction(method, dict(layers=layers, flops_reduction=target))
    report = reduction.flops(DIMS[arch], (14, 14), has_cls=True)
    achieved = 1 - report.total / vim_flops(DIMS[arch], 196, 197).total
    assert abs(achieved - target) <= 0.01, (achieved, report.tokens)


def tiny_model(reduction=None, depth=6, **kwargs):
    torch.manual_seed(0)
    return VisionMamba(img_size=64, num_classes=10, reduction=reduction,
                       **vim_arch('tiny', embed_dims=64, depth=depth), **kwargs).eval()


@pytest.mark.parametrize('schedule, message', [
    (dict(layers=[1], keep_ratio=1.5), r'keep_ratio 1.5 must be in \(0, 1\]'),
    (dict(layers=[1], keep_ratio=-0.1), r'keep_ratio -0.1 must be in \(0, 1\]'),
    (dict(layers=[9], r=1), r'layers \[9\] out of range.*\[0, 4\]'),
    (dict(layers=[1, 2], r=7), 'removes 14 of 16 tokens; at most 12'),
    (dict(layers=[1], r=1.5), 'whole number'),
    (dict(layers=[1], flops_reduction=1.2), r'flops_reduction 1.2 must be in \[0, 1\)'),
    (dict(layers=[1], flops_reduction=0.9), 'out of reach'),
    (dict(layers=[1], r=1, keep_ratio=0.5), 'exactly one of'),
])
def test_invalid_schedules_fail_at_build_time(schedule, message):
    with pytest.raises(ValueError, match=message):
        tiny_model(dict(method='mtr', schedule=schedule))


def test_r_impossible_for_method_fails_at_build_time():
    with pytest.raises(ValueError):  # ToMe merges at most half the tokens per layer
        tiny_model(dict(method='tome', schedule=dict(layers=[1], r=12)))
    with pytest.raises(ValueError, match='unknown reducer'):
        tiny_model(dict(method='nope', schedule=dict(layers=[1], r=1)))


def test_set_reduction_swaps_the_method_on_a_loaded_model():
    """What tools/analysis/compare_reductions.py relies on: installing a reduction later equals building with it,
    None gives the unreduced model back, and a bad schedule fails when set, leaving no half state."""
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    reduction = dict(method='mtr', schedule=dict(layers=[1, 3], r=3))
    model = tiny_model()
    with torch.no_grad():
        plain = model(images)
        model.set_reduction(reduction)
        swapped = model(images)
        built = tiny_model(reduction)(images)
        model.set_reduction(None)
        back = model(images)
    assert torch.equal(swapped, built) and torch.equal(back, plain) and not torch.equal(swapped, plain)
    with pytest.raises(ValueError, match='out of reach'):
        model.set_reduction(dict(method='mtr', schedule=dict(layers=[1], flops_reduction=0.9)))
    assert model.reduction is None


@pytest.mark.parametrize('method', METHODS)
def test_r_zero_equals_unreduced_model_exactly(method):
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        plain = tiny_model()(images)
        reduced = tiny_model(dict(method=method, schedule=dict(layers=[1, 3], r=0)))(images)
    assert torch.equal(plain, reduced)


@pytest.mark.parametrize('method', METHODS)
def test_token_counts_cls_tracking_batch_invariance_determinism(method):
    model = tiny_model(dict(method=method, schedule=dict(layers=[0, 2, 3], r=[3, 2, 4])))
    images = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    counts = []
    with torch.no_grad():
        state = model.forward_blocks(model.embed(images), lambda i, s: counts.append(s.num_tokens))
        assert counts == [17, 14, 14, 12, 8, 8]
        # the class token is read where it really is: its own original position
        assert (state.positions.gather(1, state.cls_index[:, None]) == 8).all()
        batched = model(images)
        alone = torch.cat([model(images[i:i + 1]) for i in range(3)])
        again = model(images)
    torch.testing.assert_close(batched, alone, rtol=1e-5, atol=1e-6)
    assert torch.equal(batched, again)
    # reduction changed the output (a reducer that silently does nothing would pass the rest)
    with torch.no_grad():
        assert not torch.allclose(batched, tiny_model()(images))


def test_mtr_scores_tokens_by_both_directions_delta():
    """The Δ score the mixer reports equals mean_E softplus(dt_proj(x_proj(u))) of the forward
    branch plus the backward branch's, flipped back — recomputed here step by step in float64."""
    model = tiny_model(depth=1)
    mixer = model.layers[0].mixer.double()
    h = torch.randn(2, 7, 64, dtype=torch.float64)
    _, score = mixer(h, 'delta_softplus')
    x, _ = mixer.in_proj(h).transpose(1, 2).chunk(2, dim=1)

    def branch_delta(x, conv, x_proj, dt_proj):
        u = F.silu(F.conv1d(x, conv.weight, conv.bias, padding=conv.kernel_size[0] - 1, groups=x.shape[1])[..., :7])
        dt = x_proj(u.transpose(1, 2))[..., :mixer.dt_rank]
        return F.softplus(dt_proj(dt)).mean(-1)

    expected = branch_delta(x, mixer.conv1d, mixer.x_proj, mixer.dt_proj) + branch_delta(
        x.flip(-1), mixer.conv1d_b, mixer.x_proj_b, mixer.dt_proj_b).flip(-1)
    torch.testing.assert_close(score, expected)


def test_target_schedule_counts_reactivated_layers_at_full_length():
    dims = DIMS['tiny']
    reduction = TokenReduction('mtr', dict(layers=[4, 8, 12], flops_reduction=0.2), reactivate_at=16)
    report = reduction.flops(dims, (32, 32), has_cls=False)
    assert report.tokens[16:] == [1024] * 8
    assert 1 - report.total / vim_flops(dims, 1024, 1024).total == pytest.approx(0.2, abs=0.01)


def reference_clipped_y(mixer, h):
    """mean_E clamp(y, 0) of the ungated SSM output, forward branch plus the backward branch's
    flipped back: every step recomputed in float64 with the per-step reference scan."""
    x, _ = mixer.in_proj(h).transpose(1, 2).chunk(2, dim=1)
    length = h.shape[1]

    def branch(x, conv, x_proj, dt_proj, a_log, d):
        u = F.silu(F.conv1d(x, conv.weight, conv.bias, padding=conv.kernel_size[0] - 1, groups=x.shape[1])[..., :length])
        dt, b, c = x_proj(u.transpose(1, 2)).split([mixer.dt_rank, mixer.d_state, mixer.d_state], dim=-1)
        delta = (dt @ dt_proj.weight.t()).transpose(1, 2)
        y = reference_scan(u, delta, -torch.exp(a_log), b.transpose(1, 2), c.transpose(1, 2), d, None, dt_proj.bias)
        return y.clamp(min=0).mean(1)

    return branch(x, mixer.conv1d, mixer.x_proj, mixer.dt_proj, mixer.A_log, mixer.D) + branch(
        x.flip(-1), mixer.conv1d_b, mixer.x_proj_b, mixer.dt_proj_b, mixer.A_b_log, mixer.D_b).flip(-1)


def test_utr_and_hsa_score_tokens_by_both_directions_clipped_y():
    model = tiny_model(depth=1)
    mixer = model.layers[0].mixer.double()
    h = torch.randn(2, 7, 64, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    out, score = mixer(h, 'y_clip')
    torch.testing.assert_close(score, reference_clipped_y(mixer, h))
    assert torch.equal(out, mixer(h)[0])                       # the score changes nothing else


def test_a_sign_flipped_out_proj_does_not_change_hsa():
    """clip(y) is read before out_proj: an out_proj of opposite sign (which flips the mixer output
    our former HSA score clipped) leaves the score, and so HSA's choice, unchanged."""
    model = tiny_model(dict(method='hsa', schedule=dict(layers=[0], r=5)), depth=2)
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        before = model.forward_blocks(model.embed(images)).positions
        model.layers[0].mixer.out_proj.weight.neg_()
        after = model.forward_blocks(model.embed(images)).positions
    assert torch.equal(before, after)


def test_reactivation_inside_the_layer_set_is_refused():
    with pytest.raises(ValueError, match=r'reactivate_at=3 .* still reduces after layers \[3, 4\]'):
        TokenReduction('mtr', dict(layers=[1, 3, 4], r=2), reactivate_at=3)


@pytest.mark.parametrize('method', ['mtr', 'hsa', 'pumer'])
@pytest.mark.parametrize('layers, reactivate_at', [([0, 1], 2), ([0], 1), ([1, 3], 4), ([0, 2, 3], 5)])
def test_counted_tokens_are_the_tokens_that_ran(method, layers, reactivate_at):
    model = VisionMamba(img_size=64, num_classes=0, with_cls_token=False, reduction=dict(
        method=method, schedule=dict(layers=layers, r=2), reactivate_at=reactivate_at, restore='similarity'),
        **vim_arch('tiny', embed_dims=32, depth=6)).eval()
    ran = []
    with torch.no_grad():
        model.forward_blocks(model.embed(torch.randn(1, 3, 64, 64)), lambda i, s: ran.append(s.num_tokens))
    assert model.flops((4, 4)).tokens == ran


@pytest.mark.parametrize('method', ['mtr', 'random', 'evit', 'pumer', 'utr', 'hsa'])
def test_cls_position_middle_puts_the_class_token_at_the_middle(method):
    model = tiny_model(dict(method=method, schedule=dict(layers=[0, 2], r=[3, 4]), cls_position='middle'))
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        state = model.forward_blocks(model.embed(images))
    assert state.num_tokens == 10 and (state.cls_index == 4).all()   # 9 other tokens: 4 before, 5 after
    assert (state.positions.gather(1, state.cls_index[:, None]) == 8).all()
    others = state.positions[state.positions != 8].view(2, -1)
    assert bool((others[:, 1:] > others[:, :-1]).all())           # the others keep their spatial order


def test_cls_position_middle_refuses_a_class_token_elsewhere():
    reduction = TokenReduction('mtr', dict(layers=[0], r=2), cls_position='middle')
    # VideoMamba-like: class token first among 16 patches; refused when installed, not mid-forward
    with pytest.raises(ValueError, match="puts it at index 0 of 17 .* use cls_position='sorted'"):
        reduction.check(VimDims(8, 6, dt_rank=1), (4, 4), 0)
    with pytest.raises(ValueError, match="puts it at index 0 of 17 .* use cls_position='sorted'"):
        tiny_model(reduction, cls_token_position='front')
    with pytest.raises(ValueError, match="cls_position='middle' applies to order-preserving methods"):
        TokenReduction('tome', dict(layers=[0], r=2), cls_position='middle')
    with pytest.raises(ValueError, match=r"cls_position must be one of \['sorted', 'middle'\]"):
        TokenReduction('mtr', dict(layers=[0], r=2), cls_position='front')


def test_similarity_restoration_is_counted():
    """Hand count: every removal records its softmax-cosine weights ((r + S)·C + r·S·C MACs, S
    survivors); every full-resolution read-out sums, per removed token, over the survivors of its
    removal (r·S·C); reactivation reads hidden and residual."""
    dims = VimDims(8, 6, dt_rank=1)
    removed = [4, 0, 2, 0, 0, 0]                                       # 16 tokens -> 12 -> 10
    plain = TokenReduction('random', dict(layers=[0, 2], r=[4, 2]), restore='unmerge')
    similarity = TokenReduction('random', dict(layers=[0, 2], r=[4, 2]), restore='similarity')
    base = plain.flops(dims, (4, 4), False, restored_after=(1, 3)).total
    records = (4 + 12) * 8 + 4 * 12 * 8 + (2 + 10) * 8 + 2 * 10 * 8
    reads = 4 * 12 * 8 + (4 * 12 * 8 + 2 * 10 * 8)                  # read-outs at layers 1 and 3
    assert similarity.removed(dims, (4, 4), False) == removed
    assert similarity.flops(dims, (4, 4), False, restored_after=(1, 3)).total == base + records + reads
    reactivated = TokenReduction('random', dict(layers=[0, 2], r=[4, 2]), restore='similarity', reactivate_at=4)
    unmerged = TokenReduction('random', dict(layers=[0, 2], r=[4, 2]), reactivate_at=4)
    base = unmerged.flops(dims, (4, 4), False, restored_after=(1, 5)).total
    # read-out at 1, hidden + residual at reactivation; layer 5 runs on the full sequence (free)
    reads = 4 * 12 * 8 + 2 * (4 * 12 * 8 + 2 * 10 * 8)
    assert reactivated.flops(dims, (4, 4), False, restored_after=(1, 5)).total == base + records + reads
