"""mmengine datasets whose images are drawn by :mod:`mtr_mm.data.gpu_scenes` when asked for, so
mmengine's Runner trains and validates on generated data with no files on disk.

A DataLoader's batch is drawn at once (``__getitems__``) on ``device``, then each image goes
through ``pipeline`` as a BGR uint8 array, the layout ``LoadImageFromFile`` gives, so the data
preprocessors of the shipped configs (``bgr_to_rgb`` / ``to_rgb``) apply as they are, with the
labels where the libraries' ``LoadAnnotations`` put them. Index i is image i of the split; for
training, ``mtr_mm.engine.training_calls.ScheduleSampler`` asks for images 0, 1, 2, ... through
the whole schedule (``num_samples``: its length, for reporting), so no image repeats and a
resumed call continues the sequence.
"""
from typing import List, Optional, Sequence

import numpy as np
import torch
from mmengine.dataset import Compose
from mmengine.registry import DATASETS

from . import fashion_scenes as fs
from . import gpu_scenes as gs


# What these datasets do themselves: a config's file pipeline (the shipped datasets' train_pipeline)
# applies as it is, its loading steps skipped.
LOADING_STEPS = ('LoadImageFromFile', 'LoadAnnotations')


def is_loading_step(transform) -> bool:
    name = transform.get('type') if isinstance(transform, dict) else type(transform).__name__
    return isinstance(name, str) and name.split('.')[-1] in LOADING_STEPS


class _GeneratedDataset(torch.utils.data.Dataset):
    """Images 0 .. ``num_samples - 1`` of a :mod:`gpu_scenes` split; subclasses draw a batch
    (``draw``) as the results dicts the pipeline starts from.

    Args:
        split: 'train', 'val' or 'test' (garments: see ``gpu_scenes``).
        num_samples: images in the dataset.
        pipeline: transforms applied to each image; its loading steps are skipped (the image and
            its labels are drawn), so a config's file pipeline applies as it is.
        seed: the random streams of the images.
        device: where images are drawn ('cuda' only with ``num_workers=0``).
        fashion_dir: Fashion-MNIST folder (default: ``fashion_scenes.default_fashion_dir()``).
    """
    METAINFO: dict = {}

    def __init__(self, split: str, num_samples: int, pipeline: Sequence[dict] = (), seed: int = 0,
                 device: str = 'cpu', fashion_dir: Optional[str] = None):
        if split not in gs.SPLITS:
            raise ValueError(f'split {split!r} is not one of {gs.SPLITS}')
        self.split, self.num_samples, self.seed = split, num_samples, seed
        self.device, self.fashion_dir = device, fashion_dir
        self.pipeline = Compose([t for t in pipeline if not is_loading_step(t)])
        self.metainfo = dict(self.METAINFO)
        self._sources = None  # loaded on first use, in the process (worker) that draws

    @property
    def sources(self) -> fs.Sources:
        if self._sources is None:
            self._sources = gs.load_split(self.split, self.fashion_dir, self.device)
        return self._sources

    def __len__(self) -> int:
        return self.num_samples

    def get_data_info(self, index: int) -> dict:
        """mmengine's ``BaseDataset`` interface: no files behind an image (its labels need drawing)."""
        return dict(sample_idx=index)

    def draw(self, index: torch.Tensor) -> List[dict]:
        raise NotImplementedError

    def __getitems__(self, indices: List[int]) -> List[dict]:
        return [self.pipeline(results) for results in self.draw(torch.as_tensor(indices, dtype=torch.int64))]

    def __getitem__(self, index: int) -> dict:
        return self.__getitems__([index])[0]


def _bgr(images: torch.Tensor) -> np.ndarray:
    """(B, 3, H, W) RGB uint8 -> (B, H, W, 3) BGR, as ``LoadImageFromFile`` reads files."""
    return images.flip(1).permute(0, 2, 3, 1).cpu().numpy()


@DATASETS.register_module()
class FashionScenesClsDataset(_GeneratedDataset):
    """Classification images of a :mod:`gpu_scenes` split (224 x 224, one garment), for
    mmpretrain's transforms (``PackInputs``): ``gt_label`` is the class index; training images
    show the train garments in a new order every 55,000 images."""
    METAINFO = dict(classes=fs.FASHION_CLASSES)

    def draw(self, index: torch.Tensor) -> List[dict]:
        images, labels = gs.cls_batch(self.sources, self.seed, self.split, index)
        return [dict(img=image, img_shape=image.shape[:2], ori_shape=image.shape[:2], gt_label=label, sample_idx=i)
                for image, label, i in zip(_bgr(images), labels.tolist(), index.tolist())]


@DATASETS.register_module()
class FashionScenesSegDataset(_GeneratedDataset):
    """Segmentation scenes of a :mod:`gpu_scenes` split (512 x 512, 2-6 garments), for mmseg's
    transforms: ``gt_seg_map`` as ``LoadAnnotations(reduce_zero_label=False)`` gives it (0 = the
    photograph, class + 1 on each garment's own pixels), the labels of the shipped
    ``_base_/datasets/fashion_scenes_seg.py`` files (test split: scene i = file scene_{i:06d})."""
    METAINFO = dict(classes=('background', ) + fs.FASHION_CLASSES)

    def draw(self, index: torch.Tensor) -> List[dict]:
        images, labels = gs.seg_batch(self.sources, self.seed, self.split, index)
        return [dict(img=image, img_shape=image.shape[:2], ori_shape=image.shape[:2], gt_seg_map=label,
                     seg_fields=['gt_seg_map'], reduce_zero_label=False, sample_idx=i)
                for image, label, i in zip(_bgr(images), labels.cpu().numpy(), index.tolist())]


@DATASETS.register_module()
class FashionScenesDetDataset(_GeneratedDataset):
    """Detection scenes of a :mod:`gpu_scenes` split (640 x 480, 2-6 garments), for mmdet's
    transforms: the fields ``LoadAnnotations(with_bbox=True, with_mask=True)`` gives for the
    COCO files of ``tools/data/make_fashion_scenes.py`` (test split: scene i = image id i + 1
    there): ``gt_bboxes`` (tight boxes), ``gt_bboxes_labels`` (class index = category id - 1,
    ``CocoDataset``'s mapping), ``gt_masks`` (bitmaps of each garment's own pixels),
    ``gt_ignore_flags`` (none ignored)."""
    METAINFO = dict(classes=fs.FASHION_CLASSES)

    def draw(self, index: torch.Tensor) -> List[dict]:
        from mmdet.structures.bbox import HorizontalBoxes
        from mmdet.structures.mask import BitmapMasks
        images, masks, boxes, classes, present = gs.det_batch(self.sources, self.seed, self.split, index)
        results = []
        for image, *scene, i in zip(_bgr(images), masks, boxes, classes, present, index.tolist()):
            scene_masks, scene_boxes, scene_classes = (x[scene[3]].cpu().numpy() for x in scene[:3])
            height, width = image.shape[:2]
            results.append(dict(
                img=image, img_shape=(height, width), ori_shape=(height, width), img_id=i + 1, sample_idx=i,
                gt_bboxes=HorizontalBoxes(scene_boxes.astype(np.float32)), gt_bboxes_labels=scene_classes,
                gt_masks=BitmapMasks(scene_masks.astype(np.uint8), height, width),
                gt_ignore_flags=np.zeros(len(scene_classes), dtype=bool)))
        return results
