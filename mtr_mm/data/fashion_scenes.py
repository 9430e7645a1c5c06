"""Fashion-MNIST garments composited onto crops of real photographs, on CPU or GPU.

No ImageNet / ADE20K / COCO exists on our machines, so the evidence is built from real data that
ships with Debian and scikit-image: the 28x28 Fashion-MNIST garments (``dataset-fashion-mnist``)
and ~16 photographs of ``skimage.data`` (the background is real texture, not black).

One function renders every image (:func:`render`), in torch, batched, on any device:

- background: a random crop of a random photograph, resized to the output size (bilinear);
- items: a garment scaled to a square of ``ITEM_SIZES`` pixels (several 16x16 patches), flipped at
  random and tinted with a random colour. Its alpha is its own intensity: pixels brighter than
  ``ALPHA_LEVEL`` replace the background, so every label comes from the item's own pixels.

Classification images are 224x224 with one item at a random position and scale. Scenes place 2-6
items in the cells of a grid (one item per cell, so items never overlap and every instance is
fully visible) and give an instance map, from which the segmentation and detection labels follow.

Every random choice is a hash of (seed, part, stream, index), so image ``index`` of a part is the
same whatever the batch it is made in; the integer choices (photo, crop, garment, box, flip) are
identical on every device, the resampled pixels up to float rounding.
"""
import gzip
import os
import os.path as osp
import shutil
from dataclasses import dataclass, fields
from typing import List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

FASHION_CLASSES = ('T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker', 'Bag',
                   'Ankle boot')
FASHION_FILES = {
    'train': ('train-images-idx3-ubyte.gz', 'train-labels-idx1-ubyte.gz'),
    'test': ('t10k-images-idx3-ubyte.gz', 't10k-labels-idx1-ubyte.gz'),
}
SYSTEM_FASHION_DIR = '/usr/share/datasets/fashion-mnist'
# The photographs of skimage.data used as backgrounds (real photos and textures; the synthetic
# images, tiny ones and those fetched from the internet are left out).
PHOTOS = ('astronaut', 'brick', 'camera', 'cell', 'chelsea', 'clock', 'coffee', 'coins', 'grass', 'gravel',
          'hubble_deep_field', 'immunohistochemistry', 'moon', 'retina', 'rocket', 'stereo_motorcycle')
PHOTOS_FILE = 'photos.npz'
ATLAS_HEIGHT = 384            # every photo is resized to this height and laid side by side
MIN_CROP_FRACTION = 0.4       # background crops span 40-100 % of the widest crop the photo allows
ALPHA_LEVEL = 16 / 255        # garment pixels above this intensity are the item's own pixels
ITEM_SIZES = (48, 160)        # item square side in pixels: 3 to 10 patches of 16
MIN_TINT = 0.25               # tint channels in [MIN_TINT, 1]: the garment never turns black
SCENE_ITEMS = (2, 6)          # items per scene, at most one per grid cell
CLS_SIZE = 224
SEG_SIZE = (512, 512)         # (height, width): ADE20K's usual crop
DET_SIZE = (480, 640)         # (height, width): a typical COCO image
# Each part of the data draws from its own random streams.
PARTS = {'cls_train': 0, 'cls_test': 1, 'seg': 2, 'det': 3, 'seg_train': 4, 'cls_val': 5, 'seg_val': 6,
         'det_val': 7, 'det_train': 8}
# The validation parts choose settings (layer sets, knobs) so that nothing is chosen on the test
# parts: other random streams, so no image is shared with test; built from the test garments, with
# classification image i of 'cls_val' using garment N-1-i, so its garments are not those of the
# first test images either (disjoint while val + test images <= N = 10,000).
VAL_PARTS = {'cls_test': 'cls_val', 'seg': 'seg_val', 'det': 'det_val'}
# Normalisation of the network input (ImageNet statistics, as for the released Vim models).
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)

_MASK32 = 0xFFFFFFFF
_STREAMS = ('photo', 'crop_w', 'crop_x', 'crop_y', 'count', 'cell', 'garment', 'size', 'x', 'y', 'flip',
            'red', 'green', 'blue')


# ----------------------------------------------------------------------------- sources

def read_idx(path: str, offset: int) -> np.ndarray:
    """The payload of a gzipped IDX file (images: offset 16, labels: offset 8)."""
    with gzip.open(path, 'rb') as f:
        return np.frombuffer(f.read(), dtype=np.uint8, offset=offset)


def load_garments(fashion_dir: str, split: str) -> Tuple[np.ndarray, np.ndarray]:
    """(N, 28, 28) uint8 garments and (N,) int64 labels of the 'train' or 'test' split."""
    images_file, labels_file = FASHION_FILES[split]
    images = read_idx(osp.join(fashion_dir, images_file), 16).reshape(-1, 28, 28)
    labels = read_idx(osp.join(fashion_dir, labels_file), 8).astype(np.int64)
    if len(images) != len(labels):
        raise ValueError(f'{fashion_dir}: {len(images)} {split} images but {len(labels)} labels')
    return images, labels


def default_fashion_dir() -> str:
    """$MTR_FASHION_DIR, else the repository's shippable copy .gpu/fashion (see ``pack_sources``),
    else the Debian package's folder."""
    repo_copy = osp.join(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))), '.gpu', 'fashion')
    for folder in (os.environ.get('MTR_FASHION_DIR'), repo_copy):
        if folder and osp.isfile(osp.join(folder, FASHION_FILES['test'][0])):
            return folder
    return SYSTEM_FASHION_DIR


def photos_from_skimage() -> List[np.ndarray]:
    """The ``PHOTOS`` as RGB uint8, each resized to ``ATLAS_HEIGHT`` rows (aspect kept)."""
    import cv2
    import skimage.data
    photos = []
    for name in PHOTOS:
        image = getattr(skimage.data, name)()
        if isinstance(image, tuple):  # stereo_motorcycle: (left, right, disparity)
            image = image[0]
        if image.ndim == 2:
            image = np.repeat(image[..., None], 3, axis=2)
        height, width = image.shape[:2]
        new_width = round(width * ATLAS_HEIGHT / height)
        shrink = height > ATLAS_HEIGHT
        photos.append(cv2.resize(np.ascontiguousarray(image[..., :3]), (new_width, ATLAS_HEIGHT),
                                 interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR))
    return photos


def load_atlas(fashion_dir: str) -> Tuple[np.ndarray, np.ndarray]:
    """(ATLAS_HEIGHT, W, 3) uint8 photos side by side and their (P,) widths: from ``photos.npz``
    beside the garments when it is there (machines whose scikit-image differs or is missing),
    else from scikit-image."""
    packed = osp.join(fashion_dir, PHOTOS_FILE)
    if osp.isfile(packed):
        with np.load(packed) as data:
            if tuple(data['names']) != PHOTOS or data['atlas'].shape[0] != ATLAS_HEIGHT:
                raise ValueError(f'{packed} was packed for other photos or another atlas height: pack it again '
                                 '(tools/data/make_fashion_scenes.py --pack DIR)')
            return data['atlas'], data['widths']
    photos = photos_from_skimage()
    return np.concatenate(photos, axis=1), np.array([p.shape[1] for p in photos], dtype=np.int64)


def pack_sources(out_dir: str, fashion_dir: str = SYSTEM_FASHION_DIR) -> List[str]:
    """Copy the Fashion-MNIST files and the photo atlas into ``out_dir`` (about 35 MB), so that a
    machine without the Debian package or scikit-image can render the same data."""
    os.makedirs(out_dir, exist_ok=True)
    written = []
    for name in FASHION_FILES['train'] + FASHION_FILES['test']:
        written.append(shutil.copy(osp.join(fashion_dir, name), osp.join(out_dir, name)))
    atlas, widths = load_atlas(fashion_dir)
    written.append(osp.join(out_dir, PHOTOS_FILE))
    np.savez_compressed(written[-1], atlas=atlas, widths=widths, names=np.array(PHOTOS))
    return written


@dataclass
class Sources:
    """What rendering needs, as tensors on one device."""
    garments: Tensor        # (N, 28, 28) uint8
    labels: Tensor          # (N,) int64 class index in FASHION_CLASSES
    atlas: Tensor           # (1, 3, ATLAS_HEIGHT, W) float32 in [0, 1], photos side by side
    photo_widths: Tensor    # (P,) int64
    photo_offsets: Tensor   # (P,) int64 first atlas column of each photo

    @property
    def num_garments(self) -> int:
        return self.garments.shape[0]

    def to(self, device) -> 'Sources':
        return Sources(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})


def load_sources(fashion_dir: Optional[str] = None, split: str = 'test', device='cpu') -> Sources:
    """Garments of ``split`` and the photo atlas, on ``device``."""
    fashion_dir = fashion_dir or default_fashion_dir()
    garments, labels = load_garments(fashion_dir, split)
    atlas, widths = load_atlas(fashion_dir)
    widths = torch.as_tensor(widths, dtype=torch.int64)
    offsets = torch.cumsum(widths, 0) - widths
    atlas = torch.from_numpy(np.ascontiguousarray(atlas)).permute(2, 0, 1)[None].float() / 255
    return Sources(torch.from_numpy(garments.copy()), torch.from_numpy(labels), atlas, widths,
                   offsets).to(device)


# ----------------------------------------------------------------------------- random draws

def _mix32(x):
    """A 32-bit integer finaliser (xor-shift-multiply) on Python ints or int64 tensors holding
    values below 2**32: the products stay below 2**59, so nothing overflows on any device."""
    x = ((x >> 16) ^ x) * 0x45D9F3B & _MASK32
    x = ((x >> 16) ^ x) * 0x45D9F3B & _MASK32
    return (x >> 16) ^ x


def uniform(seed: int, part: str, stream: str, index: Tensor) -> Tensor:
    """One float64 in [0, 1) per element of the int64 ``index``, a pure function of its arguments."""
    key = _mix32(_mix32(_mix32(seed & _MASK32) ^ PARTS[part]) ^ (_STREAMS.index(stream) + 1))
    h = _mix32(_mix32(key ^ (index & _MASK32)) ^ (index >> 32))
    return h.double() / 2.0**32


def randint(seed: int, part: str, stream: str, index: Tensor, low, high) -> Tensor:
    """Integers in [low, high) (bounds: ints or int64 tensors broadcasting with ``index``)."""
    span = torch.as_tensor(high, device=index.device) - low
    return low + (uniform(seed, part, stream, index) * span).long()


# ----------------------------------------------------------------------------- layouts

@dataclass
class Layout:
    """Everything random about a batch of B images with K item slots. Slot k's item lies inside
    cell k (row-major) of a ``grid`` of equal cells, which lets all items render at once."""
    photo: Tensor     # (B,) photo index
    crop: Tensor      # (B, 4) x, y, width, height of the crop in photo pixels
    garment: Tensor   # (B, K) garment index
    box: Tensor       # (B, K, 3) x, y, side of the item's square in image pixels
    flip: Tensor      # (B, K) bool, mirrored left-right
    tint: Tensor      # (B, K, 3) float32 colour multiplying the garment's intensity
    valid: Tensor     # (B, K) bool, the slot holds an item
    grid: Tuple[int, int]  # (rows, cols) of the cells, rows * cols = K


def sample_background(sources: Sources, seed: int, part: str, index: Tensor, height: int, width: int):
    """(photo, crop): a crop of the output's aspect ratio, 1 px inside the photo (bilinear
    sampling never reaches the neighbouring photo of the atlas)."""
    photo = randint(seed, part, 'photo', index, 0, len(sources.photo_widths))
    photo_width = sources.photo_widths[photo]
    widest = torch.clamp(photo_width - 2, max=(ATLAS_HEIGHT - 2) * width // height)
    fraction = MIN_CROP_FRACTION + (1 - MIN_CROP_FRACTION) * uniform(seed, part, 'crop_w', index)
    crop_w = (widest * fraction).round().long()
    crop_h = (crop_w * height + width // 2) // width
    x = randint(seed, part, 'crop_x', index, 1, photo_width - crop_w)
    y = randint(seed, part, 'crop_y', index, 1, ATLAS_HEIGHT - crop_h)
    return photo, torch.stack([x, y, crop_w, crop_h], dim=1)


def sample_looks(seed: int, part: str, slot_index: Tensor):
    """(flip, tint) of each item slot."""
    flip = uniform(seed, part, 'flip', slot_index) < 0.5
    tint = torch.stack([uniform(seed, part, c, slot_index) for c in ('red', 'green', 'blue')], dim=-1)
    return flip, (MIN_TINT + (1 - MIN_TINT) * tint).float()


def cls_layout(sources: Sources, seed: int, part: str, index: Tensor, size: int = CLS_SIZE) -> Layout:
    """One item per image: garment ``index % N`` (so consecutive epochs see every garment once;
    ``N - 1 - index % N`` for 'cls_val'), side in ``ITEM_SIZES``, anywhere inside the image."""
    photo, crop = sample_background(sources, seed, part, index, size, size)
    side = randint(seed, part, 'size', index, ITEM_SIZES[0], ITEM_SIZES[1] + 1)
    x = randint(seed, part, 'x', index, 0, size - side + 1)
    y = randint(seed, part, 'y', index, 0, size - side + 1)
    flip, tint = sample_looks(seed, part, index)
    garment = index % sources.num_garments
    if part == 'cls_val':  # from the other end of the garments (see VAL_PARTS)
        garment = sources.num_garments - 1 - garment
    return Layout(photo, crop, garment[:, None], torch.stack([x, y, side], -1)[:, None],
                  flip[:, None], tint[:, None], torch.ones_like(flip)[:, None], grid=(1, 1))


def scene_grid(height: int, width: int) -> Tuple[int, int]:
    """(rows, cols) of the cells scenes place items in: cells at least as large as the largest item."""
    rows, cols = height // ITEM_SIZES[1], width // ITEM_SIZES[1]
    if rows * cols < SCENE_ITEMS[0]:
        raise ValueError(f'a {height}x{width} scene holds {rows * cols} cells of {ITEM_SIZES[1]} px; '
                         f'at least {SCENE_ITEMS[0]} are needed')
    return rows, cols


def scene_layout(sources: Sources, seed: int, part: str, index: Tensor, height: int, width: int) -> Layout:
    """2-6 items in distinct cells of a grid, each anywhere inside its cell; random garments."""
    rows, cols = scene_grid(height, width)
    cells, cell_h, cell_w = rows * cols, height // rows, width // cols
    photo, crop = sample_background(sources, seed, part, index, height, width)
    slot = index[:, None] * cells + torch.arange(cells, device=index.device)     # (B, K)
    count = randint(seed, part, 'count', index, SCENE_ITEMS[0], min(SCENE_ITEMS[1], cells) + 1)
    order = uniform(seed, part, 'cell', slot).argsort(dim=1, stable=True).argsort(dim=1, stable=True)
    valid = order < count[:, None]
    garment = randint(seed, part, 'garment', slot, 0, sources.num_garments)
    side = randint(seed, part, 'size', slot, ITEM_SIZES[0], min(ITEM_SIZES[1], cell_h, cell_w) + 1)
    cell = torch.arange(cells, device=index.device)
    x = (cell % cols) * cell_w + randint(seed, part, 'x', slot, 0, cell_w - side + 1)
    y = (cell // cols) * cell_h + randint(seed, part, 'y', slot, 0, cell_h - side + 1)
    flip, tint = sample_looks(seed, part, slot)
    return Layout(photo, crop, garment, torch.stack([x, y, side], -1), flip, tint, valid, grid=(rows, cols))


# ----------------------------------------------------------------------------- rendering

def _pixel_centres(count: int, device) -> Tensor:
    return torch.arange(count, device=device, dtype=torch.float32) + 0.5


def _sample(images: Tensor, grid_x: Tensor, grid_y: Tensor, padding_mode: str) -> Tensor:
    """Bilinear samples of ``images`` (B | 1, C, h, w) at the separable normalised grid
    ``grid_x`` (B, W) x ``grid_y`` (B, H); align_corners=False: -1 and 1 are the outer pixel edges.
    A single source image is sampled for the whole batch as one tall grid."""
    batch, height, width = grid_x.shape[0], grid_y.shape[1], grid_x.shape[1]
    grid = torch.stack(torch.broadcast_tensors(grid_x[:, None, :], grid_y[:, :, None]), dim=-1)
    if images.shape[0] == 1:
        out = F.grid_sample(images, grid.reshape(1, batch * height, width, 2), mode='bilinear',
                            padding_mode=padding_mode, align_corners=False)
        return out.view(images.shape[1], batch, height, width).transpose(0, 1)
    return F.grid_sample(images, grid, mode='bilinear', padding_mode=padding_mode, align_corners=False)


def render_background(sources: Sources, layout: Layout, height: int, width: int) -> Tensor:
    """(B, 3, H, W) float32 in [0, 1]: each crop resized to the output size."""
    x, y, crop_w, crop_h = layout.crop.float().unbind(1)
    atlas_h, atlas_w = sources.atlas.shape[-2:]
    left = sources.photo_offsets[layout.photo].float() + x
    device = sources.atlas.device
    grid_x = (left[:, None] + _pixel_centres(width, device) * (crop_w / width)[:, None]) / atlas_w * 2 - 1
    grid_y = (y[:, None] + _pixel_centres(height, device) * (crop_h / height)[:, None]) / atlas_h * 2 - 1
    return _sample(sources.atlas, grid_x, grid_y, 'border')


def render_items(sources: Sources, layout: Layout, height: int, width: int) -> Tuple[Tensor, Tensor]:
    """(foreground (B, 3, H, W) float32, instances (B, H, W) uint8): slot k's own pixels (its
    resampled intensity above ``ALPHA_LEVEL``, inside its square) are ``k + 1`` in ``instances``,
    0 elsewhere. Every slot is rendered in its own cell only, all slots in one call."""
    (rows, cols), (batch, slots) = layout.grid, layout.garment.shape
    cell_h, cell_w = height // rows, width // cols
    device = sources.atlas.device
    cell = torch.arange(slots, device=device)
    x, y, side = layout.box.float().unbind(-1)                                         # (B, K) each
    x, y, side = (x - cell % cols * cell_w)[..., None], (y - cell // cols * cell_h)[..., None], side[..., None]
    grid_x = ((_pixel_centres(cell_w, device) - x) / side * 2 - 1).flatten(0, 1)        # (B * K, cell_w)
    grid_x = torch.where(layout.flip.flatten()[:, None], -grid_x, grid_x)
    grid_y = ((_pixel_centres(cell_h, device) - y) / side * 2 - 1).flatten(0, 1)        # (B * K, cell_h)
    garments = sources.garments[layout.garment.flatten()][:, None].float() / 255
    intensity = _sample(garments, grid_x, grid_y, 'zeros')                              # (B * K, 1, h, w)
    # Only pixels centred inside the square: bilinear blending reaches half a texel further.
    in_box = (grid_x.abs() < 1)[:, None, :] & (grid_y.abs() < 1)[:, :, None]
    own = (intensity[:, 0] > ALPHA_LEVEL) & in_box & layout.valid.flatten()[:, None, None]
    foreground = intensity * layout.tint.flatten(0, 1)[:, :, None, None]
    slot_ids = own * (cell.repeat(batch) + 1)[:, None, None]

    def tile(cells: Tensor) -> Tensor:
        """(B * K, C, h, w) cells -> (B, C, H, W) frames (zero right / below the grid)."""
        channels = cells.shape[1]
        frames = cells.view(batch, rows, cols, channels, cell_h, cell_w).permute(0, 3, 1, 4, 2, 5)
        frames = frames.reshape(batch, channels, rows * cell_h, cols * cell_w)
        return F.pad(frames, (0, width - cols * cell_w, 0, height - rows * cell_h))

    return tile(foreground), tile(slot_ids[:, None].to(torch.uint8))[:, 0]


def composite(background: Tensor, foreground: Tensor, instances: Tensor) -> Tensor:
    """(B, 3, H, W) uint8: the items' own pixels over the background."""
    image = torch.where(instances[:, None] > 0, foreground, background)
    return (image * 255).round_().clamp_(0, 255).to(torch.uint8)


def render(sources: Sources, layout: Layout, height: int, width: int) -> Tuple[Tensor, Tensor]:
    """(images (B, 3, H, W) uint8, instances (B, H, W) uint8)."""
    foreground, instances = render_items(sources, layout, height, width)
    return composite(render_background(sources, layout, height, width), foreground, instances), instances


# ----------------------------------------------------------------------------- datasets

def cls_batch(sources: Sources, seed: int, part: str, index: Tensor) -> Tuple[Tensor, Tensor]:
    """Classification images ``index`` of ``part``: (B, 3, 224, 224) uint8 and (B,) labels."""
    index = index.to(sources.atlas.device)
    layout = cls_layout(sources, seed, part, index)
    images, _ = render(sources, layout, CLS_SIZE, CLS_SIZE)
    return images, sources.labels[layout.garment[:, 0]]


def cls_set(sources: Sources, seed: int, part: str, count: int, batch: int = 500) -> Tuple[Tensor, Tensor]:
    """Images 0..count-1 of ``part``, made ``batch`` at a time: (count, 3, 224, 224) uint8, (count,)."""
    images, labels = [], []
    for start in range(0, count, batch):
        index = torch.arange(start, min(start + batch, count), dtype=torch.int64)
        batch_images, batch_labels = cls_batch(sources, seed, part, index)
        images.append(batch_images)
        labels.append(batch_labels)
    return torch.cat(images), torch.cat(labels)


def scene_batch(sources: Sources, seed: int, part: str, index: Tensor, height: int,
                width: int) -> Tuple[Tensor, Tensor, Tensor]:
    """Scenes ``index`` of ``part``: images (B, 3, H, W) uint8, instances (B, H, W) uint8 (0 =
    background, k + 1 = slot k) and the class of each slot (B, K) int64 (-1: empty slot)."""
    index = index.to(sources.atlas.device)
    layout = scene_layout(sources, seed, part, index, height, width)
    images, instances = render(sources, layout, height, width)
    classes = torch.where(layout.valid, sources.labels[layout.garment], -1)
    return images, instances, classes


def semantic_map(instances: Tensor, classes: Tensor) -> Tensor:
    """(B, H, W) uint8 in ADE20K's convention: 0 = background (ignored with reduce_zero_label),
    class + 1 on each item's own pixels."""
    lookup = torch.cat([torch.zeros_like(classes[:, :1]), classes + 1], dim=1).clamp(min=0)
    return lookup.gather(1, instances.long().flatten(1)).view_as(instances).to(torch.uint8)


def scene_objects(instances: Tensor, classes: Tensor) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """The detection labels of scenes (:func:`scene_batch`), per slot: masks (B, K, H, W) bool of
    the item's own pixels, tight boxes (B, K, 4) int64 x0, y0, x1, y1 (x1, y1 one past the last
    pixel), classes (B, K) and present (B, K) bool: the slot holds an item with pixels. What the
    COCO files of tools/data/make_fashion_scenes.py and the training batches of ``gpu_scenes``
    both read, so the two cannot disagree."""
    slots = torch.arange(1, classes.shape[1] + 1, device=instances.device, dtype=instances.dtype)
    masks = instances[:, None] == slots[None, :, None, None]
    rows, cols = masks.any(3), masks.any(2)                                        # (B, K, H), (B, K, W)
    first = lambda hit: hit.to(torch.uint8).argmax(-1)  # noqa: E731 (argmax: the first maximum)
    last = lambda hit: hit.shape[-1] - first(hit.flip(-1))  # noqa: E731
    boxes = torch.stack([first(cols), first(rows), last(cols), last(rows)], dim=-1).long()
    present = (classes >= 0) & rows.any(-1)
    return masks, boxes, classes, present


def normalize(images: Tensor) -> Tensor:
    """uint8 (B, 3, H, W) -> float32 network input."""
    mean = torch.tensor(MEAN, device=images.device)[:, None, None]
    std = torch.tensor(STD, device=images.device)[:, None, None]
    return (images.float() / 255 - mean) / std
