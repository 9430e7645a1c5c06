import os
import os.path as osp
from typing import Optional

import numpy as np
from mmengine.dist import all_gather_object, get_rank
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS

from ..models.vim import VisionMamba
from ..visualization import TokenRecorder, render_token_panels


def find_vim(model) -> Optional[VisionMamba]:
    model = model.module if is_model_wrapper(model) else model
    return next((m for m in model.modules() if isinstance(m, VisionMamba)), None)


@HOOKS.register_module()
class ReductionInfoHook(Hook):
    """Reports the token reduction in use and the backbone GFLOPs per image actually run during
    testing (every forward's real input grid; an image's sliding-window crops and a video's views
    add up), reduced and unreduced, next to the metrics, so logs and the metrics json carry them.
    Images are keyed by path and gathered from all ranks, so distributed runs (whose samplers pad
    ranks with repeated images) report the same numbers as one process."""
    # Before RuntimeInfoHook (VERY_HIGH), which hands the metrics to the logger and the json files.
    priority = 'HIGHEST'

    def before_test_epoch(self, runner):
        self._vim = find_vim(runner.model)
        # one-direction, both-direction, unreduced one-direction FLOPs of the current batch's forwards
        self._batch = [0., 0., 0.]
        self._images = {}  # image key -> those three FLOPs
        if self._vim is None:
            return
        runner.logger.info(f'token reduction: {self._vim.reduction}')
        self._handle = self._vim.patch_embed.register_forward_hook(self._count)

    def _count(self, module, inputs, output):
        grid, batch = output[1], output[0].shape[0]
        self._batch[0] += batch * self._vim.flops(grid, 1).total
        self._batch[1] += batch * self._vim.flops(grid, 2).total
        self._batch[2] += batch * self._vim.flops(grid, 1, reduced=False).total

    def after_test_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if self._vim is None:
            return
        samples = data_batch['data_samples']
        for i, sample in enumerate(samples):
            key = sample.metainfo.get('img_path') or sample.metainfo.get('filename') or (get_rank(), batch_idx, i)
            self._images[key] = tuple(flops / len(samples) for flops in self._batch)
        self._batch = [0., 0., 0.]

    def after_test_epoch(self, runner, metrics=None):
        if self._vim is None:
            return
        self._handle.remove()
        images = {}
        for rank_images in all_gather_object(self._images):
            images.update(rank_images)
        if metrics is not None and images:
            for name, column in (('backbone_gflops', 0), ('backbone_gflops_2dir', 1), ('backbone_gflops_unreduced', 2)):
                metrics[name] = round(sum(flops[column] for flops in images.values()) / len(images) / 1e9, 4)
            metrics['reduction'] = 'none' if self._vim.reduction is None else type(self._vim.reduction.reducer).__name__


@HOOKS.register_module()
class TokenVisualizationHook(Hook):
    """Writes token pictures (tools/visualize_tokens.py style) for the first ``max_images`` test
    images to ``out_dir``/tokens: set by ``tools/test.py --show-dir``. With slide inference the
    last window of each image is shown."""

    def __init__(self, out_dir: str, max_images: int = 16):
        self.out_dir = osp.join(out_dir, 'tokens')
        self.max_images = max_images

    def before_test_epoch(self, runner):
        self._vim = find_vim(runner.model)
        self._written = 0
        if self._vim is None or self._vim.reduction is None:
            self._recorder = None
            return
        os.makedirs(self.out_dir, exist_ok=True)
        self._recorder = TokenRecorder(self._vim).__enter__()

    def after_test_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if self._recorder is None or not self._recorder.layers:
            return
        method = type(self._vim.reduction.reducer).__name__.replace('Reducer', '')
        stride = self._vim.patch_embed.stride
        for i, sample in enumerate(data_batch['data_samples']):
            if self._written >= self.max_images or i >= len(next(iter(self._recorder.layers.values()))):
                break
            layers = {index: layouts[i] for index, layouts in self._recorder.layers.items()}
            height, width = layers[min(layers)].kept.shape
            canvas = np.zeros(((height - 1) * stride + self._vim.patch_embed.patch_size,
                               (width - 1) * stride + self._vim.patch_embed.patch_size, 3))
            image = data_batch['inputs'][i].permute(1, 2, 0).flip(-1).float().numpy() / 255  # BGR -> RGB
            h, w = min(image.shape[0], canvas.shape[0]), min(image.shape[1], canvas.shape[1])
            canvas[:h, :w] = image[:h, :w]
            name = osp.splitext(osp.basename(sample.metainfo.get('img_path', f'{batch_idx}_{i}')))[0]
            render_token_panels(osp.join(self.out_dir, f'{name}_tokens.png'), canvas, layers, stride, method)
            self._written += 1

    def after_test_epoch(self, runner, metrics=None):
        if self._recorder is not None:
            self._recorder.__exit__(None, None, None)
            runner.logger.info(f'token pictures of {self._written} images written to {self.out_dir}')
