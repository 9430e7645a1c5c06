"""Write the Fashion-MNIST-on-photographs data (mtr_mm.data.fashion_scenes) to disk.

    # samples for inspection and tests (defaults: 1000 train + 500 val + 1000 test classification images,
    # 100 val + 200 test scenes of each kind)
    python tools/data/make_fashion_scenes.py --out work_dirs/fashion_scenes
    # a validation + test pair as mmpretrain CustomDataset folders (what compare_reductions --select-on val reads)
    python tools/data/make_fashion_scenes.py --out DIR --cls-train 0 --cls-val 300 --cls-test 300 --seg 0 --det 0 \
        --seg-val 0 --det-val 0 --cls-folder
    # the full held-out classification test set the GPU scripts evaluate on (1.5 GB)
    python tools/data/make_fashion_scenes.py --out DIR --cls-train 0 --cls-test 10000 --seg 0 --det 0
    # the sources a machine without the Debian package needs (about 35 MB, git-ignored)
    python tools/data/make_fashion_scenes.py --pack .gpu/fashion

Output (DIR/):
    meta.json                               seed, sizes, classes, photos, constants
    cls/{train,val,test}_images.npy         (N, 224, 224, 3) uint8 RGB, one garment per image
    cls/{train,val,test}_labels.npy         (N,) int64 class index
    cls/images/{val,test}_NNNNN.jpg         with --cls-folder: the same as JPEG, and cls/meta/{val,test}.txt
                                            ("name label" lines; mmpretrain CustomDataset layout)
    seg/images/validation/scene_NNNNNN.jpg  ADE20K layout, 512x512, Fashion-MNIST test garments
    seg/annotations/validation/*.png        0 = background, class + 1 on the item's own pixels
    seg/{images,annotations}/training/      the same from the train garments (--seg-train)
    seg/{images,annotations}/val/           the validation scenes (--seg-val; 'validation' is the test split)
    det/val2017/scene_NNNNNN.jpg            COCO layout, 640x480
    det/annotations/instances_val2017.json  boxes + RLE masks, category ids 1..10
    det/valsplit2017/, det/annotations/instances_valsplit2017.json   the validation scenes (--det-val)

Every test part has a validation part (mtr_mm.data.fashion_scenes.VAL_PARTS) that shares no image
with it: choose settings on val, report on test.
    {cls,seg}/classes.txt                   the 10 class names, one a line

Classification image i of a part is the one the GPU scripts render for index i (same seed), so
--cls-test N writes the first N images of their test set. The scenes use the Fashion-MNIST test
garments. Deterministic: the same arguments give the same bytes. Speed on 2 CPU cores: about 3 ms
per classification image, 25 ms per scene (JPEG, PNG and RLE writing included).
"""
import argparse
import json
import os
import os.path as osp
import sys
import time

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from mtr_mm.data import fashion_scenes as fs  # noqa: E402

JPEG_QUALITY = 95


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--out', help='output folder')
    parser.add_argument('--cls-train', type=int, default=1000, help='classification train images (train garments)')
    parser.add_argument('--cls-val', type=int, default=500, help='classification validation images (for choosing)')
    parser.add_argument('--cls-test', type=int, default=1000, help='classification test images (test garments)')
    parser.add_argument('--cls-folder', action='store_true', help='also write val/test as JPEG + meta/*.txt')
    parser.add_argument('--seg', type=int, default=200, help="segmentation test scenes (ADE20K layout, 'validation')")
    parser.add_argument('--seg-val', type=int, default=100, help="segmentation validation scenes (folder 'val')")
    parser.add_argument('--seg-train', type=int, default=0, help='segmentation training scenes (train garments)')
    parser.add_argument('--det', type=int, default=200, help='detection test scenes (COCO layout, val2017)')
    parser.add_argument('--det-val', type=int, default=100, help='detection validation scenes (valsplit2017)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--batch', type=int, default=64, help='images rendered at once')
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--fashion-dir', help='Fashion-MNIST .gz folder (default: $MTR_FASHION_DIR, '
                        f'.gpu/fashion, {fs.SYSTEM_FASHION_DIR})')
    parser.add_argument('--pack', metavar='DIR', help='only copy the sources (garments + photo atlas) into DIR')
    args = parser.parse_args(argv)
    if not args.pack and not args.out:
        parser.error('give --out DIR (or --pack DIR)')
    return args


def batches(count: int, size: int):
    for start in range(0, count, size):
        yield torch.arange(start, min(start + size, count), dtype=torch.int64)


def write_classes(folder: str):
    with open(osp.join(folder, 'classes.txt'), 'w') as f:
        f.write('\n'.join(fs.FASHION_CLASSES) + '\n')


def write_cls_folder(out_dir: str, split: str):
    """{split}_images.npy as JPEG files images/{split}_NNNNN.jpg plus meta/{split}.txt."""
    from PIL import Image
    images = np.load(osp.join(out_dir, f'{split}_images.npy'), mmap_mode='r')
    labels = np.load(osp.join(out_dir, f'{split}_labels.npy'))
    os.makedirs(osp.join(out_dir, 'images'), exist_ok=True)
    os.makedirs(osp.join(out_dir, 'meta'), exist_ok=True)
    lines = []
    for index, (image, label) in enumerate(zip(images, labels.tolist())):
        name = f'{split}_{index:05d}.jpg'
        Image.fromarray(np.asarray(image)).save(osp.join(out_dir, 'images', name), quality=JPEG_QUALITY)
        lines.append(f'{name} {label}')
    with open(osp.join(out_dir, 'meta', f'{split}.txt'), 'w') as f:
        f.write('\n'.join(lines) + '\n')


def write_cls(sources, seed: int, part: str, count: int, batch: int, out_dir: str):
    """{split}_images.npy (N, 224, 224, 3) uint8 and {split}_labels.npy, filled batch by batch."""
    split = part.split('_')[1]
    images = np.lib.format.open_memmap(osp.join(out_dir, f'{split}_images.npy'), mode='w+', dtype=np.uint8,
                                       shape=(count, fs.CLS_SIZE, fs.CLS_SIZE, 3))
    labels = np.zeros(count, dtype=np.int64)
    for index in batches(count, batch):
        batch_images, batch_labels = fs.cls_batch(sources, seed, part, index)
        images[index[0]:index[-1] + 1] = batch_images.permute(0, 2, 3, 1).cpu().numpy()
        labels[index[0]:index[-1] + 1] = batch_labels.cpu().numpy()
    images.flush()
    np.save(osp.join(out_dir, f'{split}_labels.npy'), labels)


def scene_name(index: int) -> str:
    return f'scene_{index:06d}'


def save_jpeg(path: str, image: torch.Tensor):
    import cv2
    cv2.imwrite(path, image.permute(1, 2, 0).cpu().numpy()[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])


# Scene part -> ADE20K split folder ('seg' keeps its name: the validation scenes predate training ones).
SEG_SPLITS = {'seg': 'validation', 'seg_train': 'training', 'seg_val': 'val'}
# Scene part -> COCO image folder (and annotation file name).
DET_SPLITS = {'det': 'val2017', 'det_val': 'valsplit2017'}


def write_seg(sources, seed: int, part: str, count: int, batch: int, out_dir: str):
    """ADE20K layout: images/{split}/*.jpg and annotations/{split}/*.png."""
    import cv2
    split = SEG_SPLITS[part]
    image_dir, label_dir = osp.join(out_dir, 'images', split), osp.join(out_dir, 'annotations', split)
    os.makedirs(image_dir, exist_ok=True)
    os.makedirs(label_dir, exist_ok=True)
    for index in batches(count, batch):
        images, instances, classes = fs.scene_batch(sources, seed, part, index, *fs.SEG_SIZE)
        labels = fs.semantic_map(instances, classes).cpu().numpy()
        for i, image, label in zip(index.tolist(), images, labels):
            save_jpeg(osp.join(image_dir, scene_name(i) + '.jpg'), image)
            cv2.imwrite(osp.join(label_dir, scene_name(i) + '.png'), label)


def coco_instances(masks: np.ndarray, boxes: np.ndarray, classes: np.ndarray, present: np.ndarray, image_id: int,
                   first_id: int) -> list:
    """COCO annotations of one scene (its ``fs.scene_objects``): one per item, in slot order, its
    tight box and the RLE mask of its own pixels; category id = class + 1."""
    from pycocotools import mask as mask_utils
    annotations = []
    for slot in np.flatnonzero(present):
        rle = mask_utils.encode(np.asfortranarray(masks[slot].astype(np.uint8)))
        x0, y0, x1, y1 = boxes[slot].tolist()
        annotations.append(dict(
            id=first_id + len(annotations), image_id=image_id, category_id=int(classes[slot]) + 1,
            bbox=[x0, y0, x1 - x0, y1 - y0], area=int(masks[slot].sum()), iscrowd=0,
            segmentation=dict(size=list(rle['size']), counts=rle['counts'].decode('ascii'))))
    return annotations


def write_det(sources, seed: int, part: str, count: int, batch: int, out_dir: str):
    """COCO layout: {split}/*.jpg and annotations/instances_{split}.json (split: DET_SPLITS[part])."""
    height, width = fs.DET_SIZE
    split = DET_SPLITS[part]
    image_dir = osp.join(out_dir, split)
    os.makedirs(image_dir, exist_ok=True)
    os.makedirs(osp.join(out_dir, 'annotations'), exist_ok=True)
    coco = dict(info=dict(description='Fashion-MNIST garments on skimage photographs', version='1.0'),
                images=[], annotations=[],
                categories=[dict(id=i + 1, name=name, supercategory='garment')
                            for i, name in enumerate(fs.FASHION_CLASSES)])
    for index in batches(count, batch):
        images, instances, classes = fs.scene_batch(sources, seed, part, index, height, width)
        objects = [x.cpu().numpy() for x in fs.scene_objects(instances, classes)]
        for i, image, *scene in zip(index.tolist(), images, *objects):
            file_name = scene_name(i) + '.jpg'
            save_jpeg(osp.join(image_dir, file_name), image)
            coco['images'].append(dict(id=i + 1, file_name=file_name, height=height, width=width))
            coco['annotations'] += coco_instances(*scene, i + 1, len(coco['annotations']) + 1)
    with open(osp.join(out_dir, 'annotations', f'instances_{split}.json'), 'w') as f:
        json.dump(coco, f)


def main(argv=None):
    args = parse_args(argv)
    if args.pack:
        for path in fs.pack_sources(args.pack, args.fashion_dir or fs.SYSTEM_FASHION_DIR):
            print(f'{path}: {osp.getsize(path) / 2**20:.1f} MiB')
        return
    parts = [('cls_train', args.cls_train, 'train'), ('cls_val', args.cls_val, 'test'), ('cls_test', args.cls_test, 'test'),
             ('seg', args.seg, 'test'), ('seg_val', args.seg_val, 'test'), ('seg_train', args.seg_train, 'train'),
             ('det', args.det, 'test'), ('det_val', args.det_val, 'test')]
    sources = {split: fs.load_sources(args.fashion_dir, split, args.device) for split in ('train', 'test')
               if any(count and s == split for _, count, s in parts)}
    seconds = {}
    for part, count, split in parts:
        if not count:
            continue
        folder = osp.join(args.out, part.split('_')[0])
        os.makedirs(folder, exist_ok=True)
        begin = time.perf_counter()
        if part.startswith('cls'):
            write_cls(sources[split], args.seed, part, count, args.batch, folder)
            write_classes(folder)
            if args.cls_folder and part != 'cls_train':
                write_cls_folder(folder, part.split('_')[1])
        elif part in SEG_SPLITS:
            write_seg(sources[split], args.seed, part, count, args.batch, folder)
            write_classes(folder)
        else:
            write_det(sources[split], args.seed, part, count, args.batch, folder)
        seconds[part] = time.perf_counter() - begin
        print(f'{part}: {count} images in {seconds[part]:.1f} s ({seconds[part] / count * 1e3:.1f} ms each) '
              f'-> {folder}', flush=True)
    meta = dict(seed=args.seed, counts={p: c for p, c, _ in parts}, classes=list(fs.FASHION_CLASSES),
                photos=list(fs.PHOTOS), cls_size=fs.CLS_SIZE, seg_size=fs.SEG_SIZE, det_size=fs.DET_SIZE,
                item_sizes=fs.ITEM_SIZES, scene_items=fs.SCENE_ITEMS, alpha_level=fs.ALPHA_LEVEL,
                jpeg_quality=JPEG_QUALITY)
    with open(osp.join(args.out, 'meta.json'), 'w') as f:
        json.dump(meta, f, indent=1)


if __name__ == '__main__':
    main()
