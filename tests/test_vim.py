"""The Vim network against an independent float64 reference of the official forward
(tests/reference_vim.py), official checkpoint loading, sizes and parameter counts."""
import pytest
import torch

from mtr_mm import checkpoint as ckpt
from mtr_mm.models import VisionMamba, vim_arch
from reference_vim import official_state_dict, reference_forward, save_official_checkpoint

PARAMS = {'tiny': 7_148_008, 'small': 25_796_584, 'base': 97_598_440}


def max_rel_err(actual, expected):
    return ((actual.double() - expected.double()).abs().max() / expected.double().abs().max()).item()


@pytest.mark.parametrize('arch', ['tiny', 'small', 'base'])
def test_parameter_count_matches_release(arch):
    with torch.device('meta'):
        model = VisionMamba(**vim_arch(arch))
    assert sum(p.numel() for p in model.parameters()) == PARAMS[arch]


def test_state_dict_names_shapes_and_order_are_official():
    official = official_state_dict(depth=24, meta=True)
    with torch.device('meta'):
        ours = VisionMamba(**vim_arch('tiny')).state_dict()
    assert list(ours) == list(official)
    assert all(ours[k].shape == v.shape for k, v in official.items())


@pytest.fixture(scope='module')
def official_file(tmp_path_factory):
    """A reduced-depth tiny-width model saved in the official training layout."""
    state_dict = official_state_dict(depth=3, seed=1)
    path = tmp_path_factory.mktemp('ckpt') / 'vim_t_official.pth'
    save_official_checkpoint(path, state_dict)
    return path, state_dict


def test_official_checkpoint_matches_reference_forward(official_file):
    path, state_dict = official_file
    model = VisionMamba(**vim_arch('tiny', depth=3)).eval()
    # 'model' (not 'model_ema', which the reference file perturbs) must be the one picked.
    model.load_state_dict(ckpt.extract_state_dict(ckpt.load_file(str(path))), strict=True)
    images = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = model(images)
    expected = reference_forward(state_dict, images, dtype=torch.float64)
    assert ours.shape == (2, 1000)
    assert max_rel_err(ours, expected) <= 1e-5
    # The two images differ, so a batch mix-up would show.
    assert not torch.allclose(ours[0], ours[1])


def test_stride8_and_other_input_sizes(official_file):
    state_dict = official_state_dict(depth=2, stride=8, img_size=64, num_classes=10, seed=2)
    model = VisionMamba(img_size=64, stride=8, num_classes=10, **vim_arch('tiny', depth=2)).eval()
    model.load_state_dict(state_dict, strict=True)
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert max_rel_err(model(images), reference_forward(state_dict, images, stride=8)) <= 1e-5
        # any input size: the position embedding is resized on the fly
        assert model(torch.randn(1, 3, 80, 96)).shape == (1, 10)


def test_checkpoint_mismatch_errors_are_clear(tmp_path, official_file):
    path, state_dict = official_file
    small = VisionMamba(**vim_arch('small', depth=3))
    with pytest.raises(ckpt.CheckpointError, match='(?s)size mismatch.*arch tiny/small/base'):
        ckpt.load_into(small, ckpt.extract_state_dict(ckpt.load_file(str(path))), 'Vim-S')
    deeper = VisionMamba(**vim_arch('tiny', depth=4))
    with pytest.raises(ckpt.CheckpointError, match=r'missing \(17\): layers\.3\.'):
        ckpt.load_into(deeper, dict(state_dict), 'Vim-T depth 4')
    not_vim = tmp_path / 'resnet.pth'
    torch.save({'state_dict': {'conv1.weight': torch.zeros(1)}}, not_vim)
    with pytest.raises(ckpt.CheckpointError, match='unexpected'):
        ckpt.load_into(VisionMamba(**vim_arch('tiny', depth=3)),
                       ckpt.extract_state_dict(ckpt.load_file(str(not_vim))), 'Vim-T')
    with pytest.raises(ckpt.CheckpointError, match='does not exist'):
        ckpt.load_file(str(tmp_path / 'missing.pth'))


class Payload:  # an arbitrary class: a safe loader must not construct it
    pass


def test_unsafe_pickle_is_refused(tmp_path):
    path = tmp_path / 'evil.pth'
    torch.save({'model': {}, 'payload': Payload()}, path)
    with pytest.raises(ckpt.CheckpointError, match='could not be loaded safely'):
        ckpt.load_file(str(path))


def test_image_smaller_than_a_patch_fails_clearly():
    model = VisionMamba(**vim_arch('tiny', depth=1))
    with pytest.raises(ValueError, match='smaller than one 16x16 patch'):
        model(torch.randn(1, 3, 8, 32))
