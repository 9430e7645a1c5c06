"""mmengine datasets whose images are drawn by :mod:`mtr_mm.data.gpu_scenes` when asked for, so
mmengine's Runner trains and validates on generated data with no files on disk."""
from typing import List, Optional, Sequence

import torch
from mmengine.dataset import Compose
from mmengine.registry import DATASETS

from . import fashion_scenes as fs
from . import gpu_scenes as gs


@DATASETS.register_module()
class FashionScenesClsDataset(torch.utils.data.Dataset):
    """Classification images 0 .. ``num_samples - 1`` of a :mod:`gpu_scenes` split.

    A DataLoader's batch is drawn at once (``__getitems__``) on ``device``, then each image goes
    through ``pipeline`` (mmpretrain transforms: augmentations, ``PackInputs``) as a BGR uint8
    array, the layout ``LoadImageFromFile`` gives, so the data preprocessor of the ImageNet
    configs (``to_rgb=True``) applies as it is. Index i is image i of the split; for training,
    ``mtr_mm.engine.training_calls.ScheduleSampler`` asks for images 0, 1, 2, ... through the
    whole schedule (``num_samples``: its length, for reporting), the garments changing order
    every 55,000 images.

    Args:
        split: 'train', 'val' or 'test' (garments: see ``gpu_scenes``).
        num_samples: images in the dataset.
        pipeline: transforms applied to each image.
        seed: the random streams of the images.
        device: where images are drawn ('cuda' only with ``num_workers=0``).
        fashion_dir: Fashion-MNIST folder (default: ``fashion_scenes.default_fashion_dir()``).
    """
    METAINFO = dict(classes=fs.FASHION_CLASSES)

    def __init__(self, split: str, num_samples: int, pipeline: Sequence[dict] = (), seed: int = 0,
                 device: str = 'cpu', fashion_dir: Optional[str] = None):
        if split not in gs.SPLITS:
            raise ValueError(f'split {split!r} is not one of {gs.SPLITS}')
        self.split, self.num_samples, self.seed = split, num_samples, seed
        self.device, self.fashion_dir = device, fashion_dir
        self.pipeline = Compose(list(pipeline))
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
        """mmengine's ``BaseDataset`` interface: no files behind an image (its label needs drawing)."""
        return dict(sample_idx=index)

    def __getitems__(self, indices: List[int]) -> List[dict]:
        images, labels = gs.cls_batch(self.sources, self.seed, self.split, torch.as_tensor(indices, dtype=torch.int64))
        bgr = images.flip(1).permute(0, 2, 3, 1).cpu().numpy()
        return [self.pipeline(dict(img=image, img_shape=image.shape[:2], ori_shape=image.shape[:2],
                                   gt_label=label, sample_idx=i))
                for image, label, i in zip(bgr, labels.tolist(), indices)]

    def __getitem__(self, index: int) -> dict:
        return self.__getitems__([index])[0]
