"""mtr_mm.data.gpu_scenes on CPU: the same distribution as fashion_scenes' own training images
(labels, garment scale and position, pixels), determinism whatever the batch, disjoint splits."""
import os.path as osp

import pytest
import torch

from mtr_mm.data import fashion_scenes as fs
from mtr_mm.data import gpu_scenes as gs

if not osp.isfile(osp.join(fs.SYSTEM_FASHION_DIR, fs.FASHION_FILES['test'][0])):
    pytest.skip(f'Fashion-MNIST is missing from {fs.SYSTEM_FASHION_DIR}: `apt-get install dataset-fashion-mnist`',
                allow_module_level=True)
pytest.importorskip('skimage', reason='scikit-image (the background photographs) is not installed')

SEED = 0
SAMPLES = 400       # images per side of each comparison: ~3 s of rendering on one core
MAX_Z = 4.5         # two-sample z of a mean: a real difference of 0.4 standard deviations fails
# chi-square, 9 degrees of freedom, p = 1e-4: the two label histograms differ by chance less often
MAX_CHI2 = 33.7
# two-sample Kolmogorov-Smirnov, p = 1e-4: sqrt(-ln(1e-4 / 2) / 2) * sqrt(2 / SAMPLES)
MAX_KS = 2.225 * (2 / SAMPLES) ** 0.5


@pytest.fixture(scope='module')
def train_file():
    return fs.load_sources(fs.SYSTEM_FASHION_DIR, 'train')


@pytest.fixture(scope='module')
def train_sources(train_file):
    return gs.split_sources(train_file, 'train')


def footprint_stats(images: torch.Tensor, instances: torch.Tensor) -> dict:
    """Per image: the garment's own pixels' bounding box (side, centre), area within it, pixel means."""
    own = instances > 0
    rows, cols = own.any(2), own.any(1)
    coords = torch.arange(own.shape[1], dtype=torch.float64)

    def extent(mask):
        first = torch.where(mask, coords, torch.inf).amin(1)
        last = torch.where(mask, coords, -torch.inf).amax(1)
        return first, last - first + 1

    y0, height = extent(rows)
    x0, width = extent(cols)
    pixels = images.double() / 255
    foreground = (pixels * own[:, None]).sum((2, 3)) / own.sum((1, 2))[:, None]
    # where the garment's mass lies across its box: shoes point one way, so flips show here
    mass_x = (own * coords).sum((1, 2)) / own.sum((1, 2))
    stats = dict(side=torch.maximum(width, height), centre_x=x0 + width / 2, centre_y=y0 + height / 2,
                 fill=own.sum((1, 2)) / (width * height), mass_offset_x=(mass_x - x0) / width - 0.5)
    stats.update({f'mean_{c}': pixels[:, i].mean((1, 2)) for i, c in enumerate('rgb')})
    stats.update({f'contrast_{c}': pixels[:, i].std((1, 2)) for i, c in enumerate('rgb')})
    stats.update({f'garment_{c}': foreground[:, i] for i, c in enumerate('rgb')})
    return stats


def z_score(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.mean() - b.mean()) / (a.var() / len(a) + b.var() / len(b)).sqrt()).abs().item()


def ks_statistic(a: torch.Tensor, b: torch.Tensor) -> float:
    """The largest gap between the two empirical distribution functions."""
    points = torch.cat([a, b]).sort().values
    cdf_a = torch.searchsorted(a.sort().values, points, right=True) / len(a)
    cdf_b = torch.searchsorted(b.sort().values, points, right=True) / len(b)
    return (cdf_a - cdf_b).abs().max().item()


def chi2_two_sample(labels_a: torch.Tensor, labels_b: torch.Tensor, classes: int = 10) -> float:
    a, b = (torch.bincount(x, minlength=classes).double() for x in (labels_a, labels_b))
    expected_a = (a + b) * a.sum() / (a.sum() + b.sum())
    expected_b = (a + b) * b.sum() / (a.sum() + b.sum())
    return (((a - expected_a) ** 2 / expected_a) + ((b - expected_b) ** 2 / expected_b)).sum().item()


def reference_images(train_file, count: int):
    """fashion_scenes' own training images 0..count-1 (what train_fashion_cls.py trains on)."""
    index = torch.arange(count)
    layout = fs.cls_layout(train_file, SEED, 'cls_train', index)
    images, instances = fs.render(train_file, layout, fs.CLS_SIZE, fs.CLS_SIZE)
    return images, instances, train_file.labels[layout.garment[:, 0]]


def assert_same_distribution(sample, reference):
    """The checks that tell a different generator apart (see the module docstring)."""
    (images, instances, labels), (ref_images, ref_instances, ref_labels) = sample, reference
    assert chi2_two_sample(labels, ref_labels) < MAX_CHI2
    stats, ref_stats = footprint_stats(images, instances), footprint_stats(ref_images, ref_instances)
    for name in stats:
        assert z_score(stats[name], ref_stats[name]) < MAX_Z, name
        assert ks_statistic(stats[name], ref_stats[name]) < MAX_KS, name
    # labels belong to the garments drawn: each class keeps its own shape (a trouser fills
    # little of its box, a bag or pullover much)
    for label in range(10):
        ours, theirs = stats['fill'][labels == label], ref_stats['fill'][ref_labels == label]
        assert z_score(ours, theirs) < MAX_Z, f'fill of class {label}'


def test_train_images_distributed_as_fashion_scenes(train_file, train_sources):
    # images of the third epoch: other placements and other garments than the reference's
    index = 2 * train_sources.num_garments + torch.arange(SAMPLES)
    assert_same_distribution(gs.cls_render(train_sources, SEED, 'train', index),
                             reference_images(train_file, SAMPLES))


def test_test_split_is_fashion_scenes_test_set():
    test_sources = gs.load_split('test', fs.SYSTEM_FASHION_DIR)
    index = torch.tensor([0, 7, 9999])
    images, labels = gs.cls_batch(test_sources, SEED, 'test', index)
    ref_images, ref_labels = fs.cls_batch(test_sources, SEED, 'cls_test', index)
    assert torch.equal(images, ref_images) and torch.equal(labels, ref_labels)


def test_deterministic_whatever_the_batch(train_sources):
    index = torch.tensor([3, 54_999, 55_000, 200_001])  # across epoch boundaries
    images, labels = gs.cls_batch(train_sources, SEED, 'train', index)
    again, again_labels = gs.cls_batch(train_sources, SEED, 'train', index)
    assert torch.equal(images, again) and torch.equal(labels, again_labels)
    for i in range(len(index)):
        alone, alone_label = gs.cls_batch(train_sources, SEED, 'train', index[i:i + 1])
        assert torch.equal(alone[0], images[i]) and alone_label[0] == labels[i]
    other_seed, _ = gs.cls_batch(train_sources, SEED + 1, 'train', index)
    assert not torch.equal(other_seed, images)


def test_every_epoch_visits_every_train_garment_once_in_its_own_order(train_sources):
    count = train_sources.num_garments
    first, second = (gs.shuffled_garments(SEED, epoch * count + torch.arange(count), count) for epoch in (0, 1))
    assert torch.equal(first.sort().values, torch.arange(count))
    assert torch.equal(second.sort().values, torch.arange(count))
    assert (first != second).float().mean() > 0.99


def test_splits_are_disjoint(train_file):
    total = train_file.num_garments
    train, val = gs.garment_range('train', total), gs.garment_range('val', total)
    assert train == (0, total - gs.VAL_GARMENTS) and val == (total - gs.VAL_GARMENTS, total)
    assert gs.FASHION_SPLIT == {'train': 'train', 'val': 'train', 'test': 'test'}
    val_sources = gs.split_sources(train_file, 'val')
    assert torch.equal(val_sources.garments, train_file.garments[-gs.VAL_GARMENTS:])
    # the images a split renders use only its garments: every val image's garment is a val garment
    layout = fs.cls_layout(val_sources, SEED, gs.CLS_PARTS['val'], torch.arange(0, 3 * gs.VAL_GARMENTS, 7))
    assert int(layout.garment.max()) < gs.VAL_GARMENTS and int(layout.garment.min()) >= 0
    with pytest.raises(ValueError):
        gs.garment_range('holdout', total)


def test_segmentation_scenes_of_a_split(train_sources):
    images, labels = gs.seg_batch(train_sources, SEED, 'train', torch.arange(2), size=(320, 320))
    assert images.shape == (2, 3, 320, 320) and labels.shape == (2, 320, 320)
    assert 0 < int(labels.max()) <= 10


@pytest.fixture(scope='module')
def written_scenes(tmp_path_factory):
    """3 test scenes of each kind as tools/data/make_fashion_scenes.py writes them."""
    from tools.data import make_fashion_scenes
    out = tmp_path_factory.mktemp('scenes')
    make_fashion_scenes.main(['--out', str(out), '--cls-train', '0', '--cls-val', '0', '--cls-test', '0',
                              '--seg', '3', '--seg-val', '0', '--det', '3', '--det-val', '0',
                              '--fashion-dir', fs.SYSTEM_FASHION_DIR])
    return out


def test_test_scenes_are_the_written_files(written_scenes):
    """Scene i of the test split is file scene i: the same label map, boxes, categories and masks
    (the pixels up to JPEG), through the same generator (fashion_scenes.scene_objects)."""
    import json

    import cv2
    from pycocotools import mask as mask_utils
    test_sources = gs.load_split('test', fs.SYSTEM_FASHION_DIR)
    index = torch.arange(3)
    _, labels = gs.seg_batch(test_sources, SEED, 'test', index)
    for i in range(3):
        written = cv2.imread(str(written_scenes / 'seg' / 'annotations' / 'validation' / f'scene_{i:06d}.png'),
                             cv2.IMREAD_UNCHANGED)
        assert (labels[i].numpy() == written).all()
    images, masks, boxes, classes, present = gs.det_batch(test_sources, SEED, 'test', index)
    coco = json.loads((written_scenes / 'det' / 'annotations' / 'instances_val2017.json').read_text())
    for i in range(3):
        annotations = [a for a in coco['annotations'] if a['image_id'] == i + 1]
        keep = present[i]
        assert [a['category_id'] for a in annotations] == (classes[i][keep] + 1).tolist()
        assert [a['bbox'] for a in annotations] == [[x0, y0, x1 - x0, y1 - y0]
                                                    for x0, y0, x1, y1 in boxes[i][keep].tolist()]
        for annotation, mask in zip(annotations, masks[i][keep]):
            assert (mask_utils.decode(annotation['segmentation']).astype(bool) == mask.numpy()).all()
        jpeg = cv2.imread(str(written_scenes / 'det' / 'val2017' / f'scene_{i:06d}.jpg'))[..., ::-1]
        assert abs(jpeg.astype(float) - images[i].permute(1, 2, 0).numpy()).mean() < 3  # JPEG quality 95


def test_detection_training_scenes(train_sources):
    """Training scenes: train garments only, a box tight around each item's own pixels, and the
    dataset's fields as mmdet's LoadAnnotations gives them for the COCO files."""
    from mtr_mm.data.generated_datasets import FashionScenesDetDataset
    index = torch.tensor([0, 1, 54_999, 200_001])
    layout = fs.scene_layout(train_sources, SEED, gs.DET_PARTS['train'], index, *fs.DET_SIZE)
    assert int(layout.garment.max()) < train_sources.num_garments == 60_000 - gs.VAL_GARMENTS
    images, masks, boxes, classes, present = gs.det_batch(train_sources, SEED, 'train', index)
    assert images.shape == (4, 3, *fs.DET_SIZE) and torch.equal(present, layout.valid)
    assert torch.equal(classes[present], train_sources.labels[layout.garment][present])
    for mask, (x0, y0, x1, y1) in zip(masks[present], boxes[present].tolist()):
        rows, cols = mask.any(1).nonzero()[:, 0], mask.any(0).nonzero()[:, 0]
        assert [x0, y0, x1, y1] == [cols[0], rows[0], cols[-1] + 1, rows[-1] + 1]
    dataset = FashionScenesDetDataset('train', 10, fashion_dir=fs.SYSTEM_FASHION_DIR)
    dataset._sources = train_sources
    results = dataset.__getitems__([2, 1])
    assert [r['img_id'] for r in results] == [3, 2]
    second = results[1]
    assert second['img'].shape == (*fs.DET_SIZE, 3)
    assert (second['img'][..., ::-1] == images[1].permute(1, 2, 0).numpy()).all()  # BGR, as from a file
    assert second['gt_bboxes'].tensor.tolist() == boxes[1][present[1]].float().tolist()
    assert second['gt_bboxes_labels'].tolist() == classes[1][present[1]].tolist()
    assert (second['gt_masks'].masks == masks[1][present[1]].numpy()).all()
    assert not second['gt_ignore_flags'].any()
