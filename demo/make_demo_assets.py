"""Regenerate the files the embedded demo ships with (run once by maintainers; the outputs are
committed, this script documents how they were made).

    python demo/make_demo_assets.py --checkpoint work_dirs/vim_t.pth

- data/fashion_cls/: the first 48 images of the Fashion-MNIST-on-photos test set used in
  docs/benchmarks.md (seed 0, part 'cls_test'), as JPEG (quality 95), with meta/test.txt labels;
- data/imagenet/, data/ade/: the real ImageNet and ADE20K sample photos of tests/data
  (licences in data/LICENSES.md) for the token pictures;
- checkpoints/vim_tiny_fashion.pth.part{1,2}: the EMA weights (bf16) of the GPU proxy run of Vim-T
  (configs/proxy/vim_tiny_fashion_short.py, docs/proxy_training.md), cut in two byte ranges (each under
  10 MB); tools/demo.py joins them.
"""
import argparse
import os
import os.path as osp
import shutil
import sys

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)

from PIL import Image  # noqa: E402

from mtr_mm.data import fashion_scenes as fs  # noqa: E402

HERE = osp.dirname(osp.abspath(__file__))
SHARED = osp.join(ROOT, 'tests', 'data')
NUM_IMAGES = 48
PART_BYTES = 8 * 2**20


def write_fashion(out_dir: str):
    images, labels = fs.cls_set(fs.load_sources(split='test'), 0, 'cls_test', NUM_IMAGES)
    os.makedirs(osp.join(out_dir, 'images'), exist_ok=True)
    os.makedirs(osp.join(out_dir, 'meta'), exist_ok=True)
    lines = []
    for index, (image, label) in enumerate(zip(images, labels.tolist())):
        name = f'fashion_{index:03d}.jpg'
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(osp.join(out_dir, 'images', name), quality=95)
        lines.append(f'{name} {label}')
    with open(osp.join(out_dir, 'meta', 'test.txt'), 'w') as f:
        f.write('\n'.join(lines) + '\n')
    with open(osp.join(out_dir, 'classes.txt'), 'w') as f:
        f.write('\n'.join(fs.FASHION_CLASSES) + '\n')


def copy_samples():
    for src, dst in (('imagenet_sample/val', 'imagenet'), ('ade_sample/images/validation', 'ade')):
        os.makedirs(osp.join(HERE, 'data', dst), exist_ok=True)
        for name in sorted(os.listdir(osp.join(SHARED, src))):
            shutil.copy(osp.join(SHARED, src, name), osp.join(HERE, 'data', dst, name))


def split_checkpoint(path: str):
    os.makedirs(osp.join(HERE, 'checkpoints'), exist_ok=True)
    data = open(path, 'rb').read()
    for part, start in enumerate(range(0, len(data), PART_BYTES), 1):
        with open(osp.join(HERE, 'checkpoints', f'vim_tiny_fashion.pth.part{part}'), 'wb') as f:
            f.write(data[start:start + PART_BYTES])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--checkpoint', required=True, help='the weights-only checkpoint of a proxy run (tools/proxy_checkpoint.py join ... --out FILE)')
    args = parser.parse_args()
    write_fashion(osp.join(HERE, 'data', 'fashion_cls'))
    copy_samples()
    split_checkpoint(args.checkpoint)


if __name__ == '__main__':
    main()
