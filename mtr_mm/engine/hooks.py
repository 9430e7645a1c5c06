import os
import os.path as osp
from typing import Optional

import numpy as np
import torch
from mmengine.dist import all_gather_object, get_rank, is_main_process
from mmengine.hooks import Hook, LoggerHook
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
        self._per_grid = {}  # patch grid -> those three FLOPs of one image
        if self._vim is None:
            return
        runner.logger.info(f'token reduction: {self._vim.reduction}')
        self._handle = self._vim.patch_embed.register_forward_hook(self._count)

    def _count(self, module, inputs, output):
        grid, batch = tuple(output[1]), output[0].shape[0]
        if grid not in self._per_grid:  # the counts depend on the grid only: once per input size
            self._per_grid[grid] = (self._vim.flops(grid, 1).total, self._vim.flops(grid, 2).total,
                                    self._vim.flops(grid, 1, reduced=False).total)
        for column, flops in enumerate(self._per_grid[grid]):
            self._batch[column] += batch * flops

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


def padded_size(size: tuple, divisor: int) -> tuple:
    return tuple(-(-s // divisor) * divisor for s in size)


def floating_fields(element, prefix: str = ''):
    """(name, tensor) of every floating-point field of a data sample, nested elements included."""
    for key, value in element.items():
        if isinstance(value, torch.Tensor):
            if value.is_floating_point():
                yield prefix + key, value
        elif hasattr(value, 'items'):
            yield from floating_fields(value, f'{prefix}{key}.')


def all_finite(samples) -> bool:
    """Whether no floating-point field of these samples holds NaN or inf: one host read per device."""
    by_device = {}
    for sample in samples:
        for _, tensor in floating_fields(sample):
            by_device.setdefault(tensor.device, []).append(torch.isfinite(tensor).all())
    return all(bool(torch.stack(flags).all()) for flags in by_device.values())


def non_finite_field(element) -> Optional[str]:
    """The first floating-point field of a data sample (nested elements included) holding NaN or inf."""
    return next((name for name, tensor in floating_fields(element) if not torch.isfinite(tensor).all()), None)


@HOOKS.register_module()
class InputCheckHook(Hook):
    """Refuses what would otherwise give silently wrong test results:

    - an empty (0-byte) image or label file in the test set, named before the run starts;
    - a batch whose images differ in size where the data preprocessor would zero-pad them to a
      common size: the padding would enter the scan, so a prediction would depend on the batch;
    - NaN / inf in the model's outputs (non-finite weights, or an overflow).

    Padding an image alone (mmdet's pad to 1024, mmseg's to whole patches) is the same whatever the
    batch, so it is allowed."""
    priority = 'VERY_HIGH'

    def before_val_epoch(self, runner):
        self._check_files(runner.val_dataloader.dataset)

    def before_test_epoch(self, runner):
        self._check_files(runner.test_dataloader.dataset)

    def before_val_iter(self, runner, batch_idx, data_batch=None):
        self._check_batch(runner, batch_idx, data_batch)

    def before_test_iter(self, runner, batch_idx, data_batch=None):
        self._check_batch(runner, batch_idx, data_batch)

    def after_val_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self._check_outputs(outputs)

    def after_test_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self._check_outputs(outputs)

    @staticmethod
    def _check_files(dataset):
        for i in range(len(dataset)):
            info = dataset.get_data_info(i)
            for key in ('img_path', 'seg_map_path'):
                path = info.get(key)
                if isinstance(path, str) and osp.isfile(path) and osp.getsize(path) == 0:
                    raise ValueError(f'{path} is an empty file (0 bytes; test sample {i}, {key}): restore or '
                                     'remove it (and its entry in the annotation file)')

    @staticmethod
    def _check_batch(runner, batch_idx, data_batch):
        inputs = data_batch['inputs'] if data_batch else None
        if not isinstance(inputs, (list, tuple)) or len(inputs) < 2:
            return  # a stacked tensor: one size
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        preprocessor = model.data_preprocessor
        sizes = [tuple(image.shape[-2:]) for image in inputs]
        # mmseg pads test images only alone (to test_cfg); mmpretrain and mmdet pad to the batch's largest.
        divisor = 0 if hasattr(preprocessor, 'test_cfg') else getattr(preprocessor, 'pad_size_divisor', 1)
        alone = [size if not divisor else padded_size(size, divisor) for size in sizes]
        if len(set(alone)) > 1:
            raise ValueError(
                f'test batch {batch_idx} mixes image sizes {sorted(set(sizes))}: {type(preprocessor).__name__} '
                'would zero-pad them to one size and the padding would enter the Mamba scan, so each prediction '
                'would depend on its batch. Give the test pipeline a fixed output size (classification: ResizeEdge '
                '+ CenterCrop) or set test_dataloader.batch_size=1.')

    @staticmethod
    def _check_outputs(outputs):
        samples = [sample for sample in outputs or [] if hasattr(sample, 'items')]
        if all_finite(samples):  # one host read per device and batch; the slow search only on failure
            return
        for sample in samples:
            field = non_finite_field(sample)
            if field:
                raise FloatingPointError(
                    f'the model output {field} of {sample.metainfo.get("img_path", "a test sample")} holds NaN or '
                    'inf: the weights are not finite, or the computation overflowed (fp16/bf16). Check the '
                    'checkpoint, or test in fp32.')


@HOOKS.register_module()
class CollectUnderWorkDirHook(Hook):
    """Distributed runs on CPU gather the ranks' results through a folder, by default mmengine's
    ``.dist_test`` in the current directory (left behind there); this puts it under the work dir."""

    def before_val(self, runner):
        self._redirect(runner.val_loop.evaluator, runner.work_dir)

    def before_test(self, runner):
        self._redirect(runner.test_loop.evaluator, runner.work_dir)

    @staticmethod
    def _redirect(evaluator, work_dir):
        for metric in evaluator.metrics:
            if metric.collect_device == 'cpu' and metric.collect_dir is None:
                metric.collect_dir = osp.join(work_dir, '.dist_collect')


@HOOKS.register_module()
class MainProcessLoggerHook(LoggerHook):
    """mmengine's LoggerHook, except that only the main process writes the test metrics' JSON file.
    mmengine dumps it from every rank to one path (the run's timestamp is shared), and two ranks
    writing it at once can leave a corrupt file (a shorter record with the tail of a longer one)."""

    def after_test_epoch(self, runner, metrics=None):
        if is_main_process():
            super().after_test_epoch(runner, metrics)


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
