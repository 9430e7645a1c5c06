"""Training data for the proxy models: the Fashion-MNIST-on-photos images of
:mod:`mtr_mm.data.fashion_scenes`, drawn in batches with torch ops on any device (the GPU while
training, so training is bound by the model, not by compositing), split by garments:

- ``train``: Fashion-MNIST train garments 0 .. N - VAL_GARMENTS - 1, a new order every epoch;
- ``val``: the last ``VAL_GARMENTS`` train garments (choosing checkpoints and settings);
- ``test``: the Fashion-MNIST test garments; test image i is image i of ``fashion_scenes``'
  'cls_test' part, the one every evaluation script reports on (scenes: image i of its 'seg' /
  'det' parts, what ``tools/data/make_fashion_scenes.py`` writes as the test files).

Scenes: the files' validation parts ('seg_val', 'det_val' written from the test garments) are
not the ``val`` split here (the same streams, drawn from the val garments).

No garment is in two splits, and every image is a pure function of (seed, split, index): the
same on a device whatever the batch it is drawn in. The rendering (photo crop, placement, flip,
tint, alpha, instance masks) is ``fashion_scenes``' own, so the semantics cannot drift apart;
this module only chooses which garments a split may use and in which order.
"""
from dataclasses import replace
from typing import Optional, Tuple

import torch
from torch import Tensor

from . import fashion_scenes as fs

VAL_GARMENTS = 5000
SPLITS = ('train', 'val', 'test')
FASHION_SPLIT = {'train': 'train', 'val': 'train', 'test': 'test'}  # which Fashion-MNIST file a split uses
CLS_PARTS = {'train': 'cls_train', 'val': 'cls_val', 'test': 'cls_test'}  # fashion_scenes' random streams
SCENE_PARTS = {'train': 'seg_train', 'val': 'seg_val', 'test': 'seg'}
DET_PARTS = {'train': 'det_train', 'val': 'det_val', 'test': 'det'}


def garment_range(split: str, num_garments: int) -> Tuple[int, int]:
    """[first, last) garments of the Fashion-MNIST file that ``split`` may use."""
    if split == 'train':
        return 0, num_garments - VAL_GARMENTS
    if split == 'val':
        return num_garments - VAL_GARMENTS, num_garments
    if split == 'test':
        return 0, num_garments
    raise ValueError(f'split {split!r} is not one of {SPLITS}')


def split_sources(sources: fs.Sources, split: str) -> fs.Sources:
    """``sources`` (loaded from ``FASHION_SPLIT[split]``) restricted to the garments of ``split``."""
    first, last = garment_range(split, sources.num_garments)
    return replace(sources, garments=sources.garments[first:last], labels=sources.labels[first:last])


def load_split(split: str, fashion_dir: Optional[str] = None, device='cpu') -> fs.Sources:
    """The garments of ``split`` and the photo atlas, on ``device``."""
    return split_sources(fs.load_sources(fashion_dir, FASHION_SPLIT[split], device), split)


def epoch_order(seed: int, epoch: Tensor, num_garments: int) -> Tensor:
    """(E, N) a permutation of the garments for each epoch: argsort of hashed keys."""
    slot = epoch[:, None] * num_garments + torch.arange(num_garments, device=epoch.device)
    return fs.uniform(seed, 'cls_train', 'garment', slot).argsort(dim=1, stable=True)


def shuffled_garments(seed: int, index: Tensor, num_garments: int) -> Tensor:
    """Garment of training image ``index``: epoch ``index // N`` visits every garment once, in its
    own order."""
    epochs, which = torch.unique(index // num_garments, return_inverse=True)
    return epoch_order(seed, epochs, num_garments)[which, index % num_garments]


def cls_render(sources: fs.Sources, seed: int, split: str, index: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    """Classification images ``index`` of ``split`` (``sources`` from :func:`load_split`):
    images (B, 3, 224, 224) uint8, instances (B, 224, 224) uint8 (1 on the garment's own
    pixels) and labels (B,) int64, on the sources' device."""
    index = index.to(sources.atlas.device)
    layout = fs.cls_layout(sources, seed, CLS_PARTS[split], index)
    if split == 'train':
        layout = replace(layout, garment=shuffled_garments(seed, index, sources.num_garments)[:, None])
    images, instances = fs.render(sources, layout, fs.CLS_SIZE, fs.CLS_SIZE)
    return images, instances, sources.labels[layout.garment[:, 0]]


def cls_batch(sources: fs.Sources, seed: int, split: str, index: Tensor) -> Tuple[Tensor, Tensor]:
    """(images (B, 3, 224, 224) uint8, labels (B,)) of :func:`cls_render`."""
    images, _, labels = cls_render(sources, seed, split, index)
    return images, labels


def seg_batch(sources: fs.Sources, seed: int, split: str, index: Tensor,
              size: Tuple[int, int] = fs.SEG_SIZE) -> Tuple[Tensor, Tensor]:
    """Scenes ``index`` of ``split``: images (B, 3, H, W) uint8 and semantic maps (B, H, W)
    uint8 (0 = background, class + 1 on each item's own pixels, ADE20K's convention)."""
    images, instances, classes = fs.scene_batch(sources, seed, SCENE_PARTS[split], index, *size)
    return images, fs.semantic_map(instances, classes)


def det_batch(sources: fs.Sources, seed: int, split: str, index: Tensor,
              size: Tuple[int, int] = fs.DET_SIZE) -> Tuple[Tensor, ...]:
    """Detection scenes ``index`` of ``split``: images (B, 3, H, W) uint8 and, per item slot,
    masks (B, K, H, W) bool, boxes (B, K, 4) int64 x0, y0, x1, y1, classes (B, K) and present
    (B, K) bool (``fashion_scenes.scene_objects``, what the COCO files hold: category id =
    class + 1)."""
    images, instances, classes = fs.scene_batch(sources, seed, DET_PARTS[split], index, *size)
    return (images, *fs.scene_objects(instances, classes))
