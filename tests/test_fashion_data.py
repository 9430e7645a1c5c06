"""The Fashion-MNIST-on-photographs data (mtr_mm.data.fashion_scenes, tools/data/make_fashion_scenes.py)
and the scripts built on it (tools/benchmarks/train_fashion_cls.py, eval_reduction_cls.py, the
segmentation config through tools/train.py and tools/analysis/compare_reductions.py): determinism,
labels that match the pixels, the ADE20K / COCO layouts read by mmseg and mmdet, and CPU smoke runs
of training and evaluation."""
import importlib.util
import json
import os.path as osp
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch

import script_runner
from mtr_mm.data import fashion_scenes as fs
from script_runner import REPO, cfg_options

FASHION = fs.SYSTEM_FASHION_DIR
if not osp.isfile(osp.join(FASHION, fs.FASHION_FILES['test'][0])):
    pytest.skip(f'Fashion-MNIST is missing from {FASHION}: `apt-get install dataset-fashion-mnist` '
                '(scripts/setup_env.sh installs it)', allow_module_level=True)
pytest.importorskip('skimage', reason='scikit-image (the background photographs) is not installed')

SAMPLE_ARGS = ['--cls-train', '6', '--cls-val', '4', '--cls-test', '6', '--cls-folder', '--seg', '3', '--seg-val', '2',
               '--seg-train', '4', '--det', '3', '--det-val', '2', '--batch', '4', '--fashion-dir', FASHION]
TINY = ['--embed-dims', '16', '--depth', '4']


def load_tool(path: str):
    spec = importlib.util.spec_from_file_location(Path(path).stem, REPO / path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# One thread: the tiny models' ops are too small to share, and two threads on a busy two-core
# machine run ten times slower than one.
run_script = partial(script_runner.run_script, threads=1)


@pytest.fixture(scope='module')
def sources():
    return fs.load_sources(FASHION, 'test')


@pytest.fixture(scope='module')
def generated(tmp_path_factory):
    """The same small data set written twice."""
    make = load_tool('tools/data/make_fashion_scenes.py')
    outs = [tmp_path_factory.mktemp(f'fashion{i}') for i in range(2)]
    for out in outs:
        make.main(['--out', str(out), *SAMPLE_ARGS])
    return outs


def files_of(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob('*')) if p.is_file()}


def test_generator_is_deterministic(generated):
    first, second = map(files_of, generated)
    assert sorted(first) == sorted(second)
    # 3 + 2 + 4 segmentation, 3 + 2 detection scenes, 4 + 6 classification images (--cls-folder)
    assert len([k for k in first if k.endswith('.jpg')]) == 24
    assert len([k for k in first if k.startswith('seg/images/training/')]) == 4
    assert all(first[k] == second[k] for k in first), [k for k in first if first[k] != second[k]]


def test_validation_parts_share_no_image_with_test(generated, sources):
    """Settings are chosen on val, reported on test: no image in common, and the classification
    val images show garments of the other end of the test garments."""
    cls = generated[0] / 'cls'
    val, test = np.load(cls / 'val_images.npy'), np.load(cls / 'test_images.npy')
    assert val.shape == (4, 224, 224, 3) and not any(np.array_equal(v, t) for v in val for t in test)
    layout = fs.cls_layout(sources, 0, 'cls_val', torch.arange(4))
    assert layout.garment[:, 0].tolist() == [sources.num_garments - 1 - i for i in range(4)]
    lines = (cls / 'meta' / 'val.txt').read_text().split()
    assert lines[0::2] == [f'val_{i:05d}.jpg' for i in range(4)]
    assert [int(x) for x in lines[1::2]] == np.load(cls / 'val_labels.npy').tolist()
    for split in ('val', 'validation'):
        assert (generated[0] / 'seg' / 'images' / split).is_dir()
    scenes = lambda split: {p.read_bytes() for p in (generated[0] / 'seg' / 'images' / split).iterdir()}  # noqa: E731
    assert len(scenes('val')) == 2 and not scenes('val') & scenes('validation')
    coco = json.loads((generated[0] / 'det' / 'annotations' / 'instances_valsplit2017.json').read_text())
    assert [image['file_name'] for image in coco['images']] == ['scene_000000.jpg', 'scene_000001.jpg']
    assert sorted(fs.VAL_PARTS.values()) == sorted(p for p in fs.PARTS if p.endswith('_val'))


def test_images_depend_on_seed_and_index_only(sources):
    index = torch.arange(8)
    images, labels = fs.cls_batch(sources, 0, 'cls_test', index)
    alone, alone_labels = fs.cls_batch(sources, 0, 'cls_test', index[[5, 2]])
    assert torch.equal(alone, images[[5, 2]]) and torch.equal(alone_labels, labels[[5, 2]])
    other_seed, _ = fs.cls_batch(sources, 1, 'cls_test', index)
    assert not torch.equal(other_seed, images)
    assert torch.equal(labels, sources.labels[index])  # image i shows garment i % N


def test_written_classification_arrays(generated, sources):
    folder = generated[0] / 'cls'
    images, labels = np.load(folder / 'test_images.npy'), np.load(folder / 'test_labels.npy')
    assert images.shape == (6, 224, 224, 3) and images.dtype == np.uint8
    expected, expected_labels = fs.cls_batch(sources, 0, 'cls_test', torch.arange(6))
    assert np.array_equal(images, expected.permute(0, 2, 3, 1).numpy())
    assert np.array_equal(labels, expected_labels.numpy())
    assert (folder / 'classes.txt').read_text().split('\n')[:10] == list(fs.FASHION_CLASSES)


def test_labels_are_the_items_own_pixels(sources):
    """Outside the mask the image IS the background; inside, the tinted garment, which differs
    from the background; the mask lies in the item's box and has the garment's area."""
    index = torch.arange(16)
    layout = fs.cls_layout(sources, 3, 'cls_train', index)
    images, instances = fs.render(sources, layout, 224, 224)
    background = fs.composite(fs.render_background(sources, layout, 224, 224), torch.zeros(16, 3, 224, 224),
                              torch.zeros(16, 224, 224, dtype=torch.uint8))
    outside = (instances == 0)[:, None].expand_as(images)
    assert torch.equal(images[outside], background[outside])
    inside = ~outside
    assert (images[inside] != background[inside]).float().mean() > 0.9
    for b in range(16):
        x, y, side = layout.box[b, 0].tolist()
        mask = instances[b] == 1
        assert mask[y:y + side, x:x + side].sum() == mask.sum() > 0
        garment = sources.garments[layout.garment[b, 0]]
        expected_area = (garment.float() / 255 > fs.ALPHA_LEVEL).sum().item() * (side / 28)**2
        assert abs(mask.sum().item() / expected_area - 1) < 0.25


def test_scenes_place_separate_items(sources):
    images, instances, classes = fs.scene_batch(sources, 0, 'det', torch.arange(6), *fs.DET_SIZE)
    assert images.shape == (6, 3, 480, 640) and instances.shape == (6, 480, 640)
    semantic = fs.semantic_map(instances, classes)
    for b in range(6):
        present = torch.nonzero(classes[b] >= 0).flatten()
        assert fs.SCENE_ITEMS[0] <= len(present) <= fs.SCENE_ITEMS[1]
        assert set(instances[b].unique().tolist()) == {0, *(present + 1).tolist()}
        for slot in present:
            assert (semantic[b][instances[b] == slot + 1] == classes[b, slot] + 1).all()
    assert (semantic[instances == 0] == 0).all()


def test_packed_sources_render_the_same(tmp_path, sources):
    fs.pack_sources(str(tmp_path), FASHION)
    packed = fs.load_sources(str(tmp_path), 'test')
    assert torch.equal(packed.atlas, sources.atlas) and torch.equal(packed.garments, sources.garments)


def test_segmentation_scenes_load_with_mmseg(generated):
    from mmengine.registry import init_default_scope
    from mmseg.datasets import ADE20KDataset, BaseSegDataset
    import cv2
    init_default_scope('mmseg')
    root = generated[0] / 'seg'
    common = dict(data_root=str(root), data_prefix=dict(img_path='images/validation',
                                                         seg_map_path='annotations/validation'),
                  pipeline=[dict(type='LoadImageFromFile'), dict(type='LoadAnnotations')])
    for dataset in (ADE20KDataset(**common),
                    BaseSegDataset(metainfo=dict(classes=fs.FASHION_CLASSES), img_suffix='.jpg',
                                   seg_map_suffix='.png', reduce_zero_label=True, **common)):
        assert len(dataset) == 3
        for item in dataset:
            png = cv2.imread(item['seg_map_path'], cv2.IMREAD_UNCHANGED).astype(np.int64)
            assert item['img'].shape == (*fs.SEG_SIZE, 3)
            assert np.array_equal(item['gt_seg_map'], np.where(png == 0, 255, png - 1))
            assert set(np.unique(item['gt_seg_map'])) <= set(range(10)) | {255}
            assert len(np.unique(item['gt_seg_map'])) > 1


def test_training_scenes_use_the_train_garments(generated):
    """The training split is its own draw from the train garments: no scene repeats a validation one."""
    import cv2
    seg = generated[0] / 'seg'
    train = [cv2.imread(str(p)) for p in sorted((seg / 'images' / 'training').glob('*.jpg'))]
    val = [cv2.imread(str(p)) for p in sorted((seg / 'images' / 'validation').glob('*.jpg'))]
    assert not any(np.array_equal(t, v) for t in train for v in val)
    train_sources = fs.load_sources(FASHION, 'train')
    images, instances, classes = fs.scene_batch(train_sources, 0, 'seg_train', torch.arange(4), *fs.SEG_SIZE)
    for i, path in enumerate(sorted((seg / 'annotations' / 'training').glob('*.png'))):
        label = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        assert np.array_equal(label, fs.semantic_map(instances, classes)[i].numpy())


def test_detection_scenes_load_with_mmdet_and_gt_scores_ap_1(generated):
    from mmdet.datasets import CocoDataset
    from mmdet.evaluation import CocoMetric
    from mmengine.registry import init_default_scope
    from pycocotools import mask as mask_utils
    init_default_scope('mmdet')
    root = generated[0] / 'det'
    ann_file = str(root / 'annotations' / 'instances_val2017.json')
    dataset = CocoDataset(data_root=str(root), ann_file='annotations/instances_val2017.json',
                          data_prefix=dict(img='val2017/'), metainfo=dict(classes=fs.FASHION_CLASSES),
                          test_mode=True, pipeline=[dict(type='LoadImageFromFile'),
                                                    dict(type='LoadAnnotations', with_bbox=True, with_mask=True)])
    coco = json.loads(Path(ann_file).read_text())
    assert len(dataset) == 3 and sum(len(dataset.get_data_info(i)['instances']) for i in range(3)) == len(
        coco['annotations'])
    metric = CocoMetric(ann_file=ann_file, metric=['bbox', 'segm'])
    metric.dataset_meta = dataset.metainfo
    for item in dataset:
        masks = torch.from_numpy(item['gt_masks'].to_ndarray()).bool()
        boxes = torch.from_numpy(item['gt_bboxes'].numpy())
        for mask, box in zip(masks, boxes):  # boxes are the masks' tight boxes
            rows, cols = torch.nonzero(mask.any(1)).flatten(), torch.nonzero(mask.any(0)).flatten()
            assert box.tolist() == [cols[0], rows[0], cols[-1] + 1, rows[-1] + 1]
        pred = dict(bboxes=boxes, scores=torch.ones(len(boxes)), labels=torch.from_numpy(item['gt_bboxes_labels']),
                    masks=masks)
        metric.process({}, [dict(pred_instances=pred, img_id=item['img_id'], ori_shape=item['ori_shape'])])
    results = metric.compute_metrics(metric.results)
    assert results['bbox_mAP'] == 1.0 and results['segm_mAP'] == 1.0
    assert all(mask_utils.area(a['segmentation']) == a['area'] for a in coco['annotations'])


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp('train')
    run_script('tools/benchmarks/train_fashion_cls.py', '--device', 'cpu', '--steps', '2', '--batch', '2',
               '--test-count', '8', '--log-interval', '1', '--fashion-dir', FASHION, '--out-dir', out, *TINY)
    return out


def test_training_writes_a_loadable_official_checkpoint(trained, monkeypatch):
    from mtr_mm import checkpoint as ckpt
    monkeypatch.syspath_prepend(str(REPO / 'tools' / 'benchmarks'))
    from train_fashion_cls import build_model
    checkpoint = ckpt.load_file(str(trained / 'vim_fashion.pth'))  # safe loading: plain types only
    state_dict = ckpt.extract_state_dict(checkpoint)
    assert ckpt.is_official_vim(state_dict) and all(v.dtype == torch.float16 for v in state_dict.values())
    ckpt.load_into(build_model(16, 4), state_dict, 'test')
    assert checkpoint['args']['embed_dims'] == 16 and checkpoint['args']['nb_classes'] == 10
    log = json.loads((trained / 'train_log.json').read_text())
    assert log['steps'] == 2 and [e['step'] for e in log['curve']] == [1, 2] and 0 <= log['test_top1'] <= 100


def test_evaluation_of_every_reducer_on_cpu(trained, tmp_path):
    out = tmp_path / 'eval'
    run_script('tools/benchmarks/eval_reduction_cls.py', trained / 'vim_fashion.pth', '--device', 'cpu',
               '--limit', '8', '--layers', '0', '1', '2', '--ablation-layers', '0,1,2', '0,2',
               '--fashion-dir', FASHION, '--out-dir', out)
    results = json.loads((out / 'results.json').read_text())
    rows = {r['name']: r for r in results['rows']}
    assert results['test_count'] == 8 and rows['none']['flops_reduction'] == 0
    for method in ('mtr', 'random', 'evit', 'tome', 'pumer', 'utr', 'hsa'):
        for target in (0.2, 0.3, 0.4):
            row = rows[f'{method}@{target}']
            if 'error' in row:  # merging methods cap r per layer: 40 % is out of reach on 3 early layers
                assert target == 0.4 and 'out of reach' in row['error']
            else:
                assert abs(row['flops_reduction'] - target) < 0.01 and 0 <= row['top1'] <= 100
    ablation = [r for r in results['rows'] if r['group'] == 'ablation']
    assert {r['factor'] for r in ablation} == {'defaults', 'delta_activation', 'keep_ratio', 'merge_weights',
                                              'similarity', 'layers'}
    assert all('top1' in r for r in ablation) and rows['mtr@0.4 defaults']['top1'] == rows['mtr@0.4']['top1']
    assert (out / 'top1_vs_gflops.png').stat().st_size > 0
    report = (out / 'results.md').read_text()
    assert '| mtr@0.4 keep_ratio=0.5 |' in report
    again = tmp_path / 'again'
    run_script('tools/benchmarks/eval_reduction_cls.py', '--report-only', out / 'results.json', '--out-dir', again)
    assert (again / 'results.md').read_text() == report


# Vim 64 wide, 4 deep, UperNet 32 channels, on the 512x512 scenes (the model's grid: 32x32 patches).
SEG_TINY = {'model.backbone.embed_dims': 64, 'model.backbone.depth': 4, 'model.backbone.out_indices': [0, 1, 2, 3],
            'model.backbone.init_cfg': None, 'model.neck.in_channels': [64] * 4, 'model.neck.out_channels': 32,
            'model.decode_head.in_channels': [32] * 4, 'model.decode_head.channels': 32,
            'model.auxiliary_head.in_channels': 32, 'model.auxiliary_head.channels': 16,
            'train_dataloader.batch_size': 2, 'val_dataloader.batch_size': 2, 'test_dataloader.batch_size': 2,
            **{f'{split}_dataloader.{key}': value for split in ('train', 'val', 'test')
               for key, value in (('num_workers', 0), ('persistent_workers', False))}}
SEG_CONFIG = 'configs/vim_seg/vim_tiny_upernet_fashion_512.py'


def seg_options(root) -> list:
    return cfg_options({**SEG_TINY, **{f'{split}_dataloader.dataset.data_root': root
                                       for split in ('train', 'val', 'test')}})


@pytest.fixture(scope='module')
def seg_trained(generated, tmp_path_factory):
    """Two training iterations of the Fashion segmentation config on the generated scenes."""
    work_dir = tmp_path_factory.mktemp('seg_train')
    run_script('tools/train.py', SEG_CONFIG, '--work-dir', work_dir, *seg_options(generated[0] / 'seg'),
               'train_cfg.max_iters=2', 'train_cfg.val_interval=2', 'default_hooks.checkpoint.interval=2',
               'randomness.seed=0')
    return work_dir / 'iter_2.pth'


def test_segmentation_grid_on_the_scenes(generated, seg_trained, tmp_path):
    """tools/train.py -> tools/analysis/compare_reductions.py: every requested run, mIoU from mmseg's
    IoUMetric, measured GFLOPs at the target; the unreduced run equals tools/test.py on the same
    checkpoint. (That each restoration mode reaches the head is tests/test_dense.py's job: two
    iterations leave a model whose predictions may not depend on it.)"""
    root = generated[0] / 'seg'
    out = tmp_path / 'eval'
    run_script('tools/analysis/compare_reductions.py', SEG_CONFIG, seg_trained, '--methods', 'mtr', 'tome',
               '--targets', '0.3', '0.4', '--restores', 'unmerge', 'zero', '--layers', '0,1,2',
               '--out-dir', out, *seg_options(root))
    results = json.loads((out / 'results.json').read_text())
    rows = {r['name']: r for r in results['rows']}
    assert results['images'] == 3 and results['metric'] == 'mIoU' and len(rows) == 1 + 2 * 2 * 2
    assert set(rows) >= {'none', 'mtr@0.3 unmerge', 'mtr@0.4 zero', 'tome@0.3 zero'}
    base = rows['none']
    for name, row in rows.items():
        if name == 'none':
            continue
        if 'error' in row:  # ToMe merges at most half the tokens per layer: 40 % is out of reach on 3 layers
            assert row['method'] == 'tome' and row['target'] == 0.4 and 'out of reach' in row['error']
            continue
        assert abs(1 - row['gflops'] / base['gflops'] - row['target']) < 0.01, row
        assert 0 <= row['metrics']['mIoU'] <= 100 and set(row['metrics']) == {'aAcc', 'mIoU', 'mAcc'}
    assert (out / 'metric_vs_gflops.png').stat().st_size > 0
    test_dir = tmp_path / 'test'
    run_script('tools/test.py', SEG_CONFIG, seg_trained, '--work-dir', test_dir, *seg_options(root))
    [log] = test_dir.glob('*/*.json')
    assert json.loads(log.read_text().splitlines()[-1])['mIoU'] == pytest.approx(base['metrics']['mIoU'], abs=0.01)
    again = tmp_path / 'again'
    run_script('tools/analysis/compare_reductions.py', '--report-only', out / 'results.json', '--out-dir', again)
    assert (again / 'results.md').read_text() == (out / 'results.md').read_text()
