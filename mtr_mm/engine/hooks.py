from typing import Optional

from mmengine.dist import all_gather_object, get_rank
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS

from ..models.vim import VisionMamba
from ..reduction.flops import vim_flops


def find_vim(model) -> Optional[VisionMamba]:
    model = model.module if is_model_wrapper(model) else model
    return next((m for m in model.modules() if isinstance(m, VisionMamba)), None)


def backbone_flops(vim: VisionMamba, grid_size: tuple, directions: int = 1) -> float:
    """Backbone FLOPs of one image with this patch grid, reduction and its overhead included."""
    num_patches = grid_size[0] * grid_size[1]
    return vim_flops(vim.dims(), num_patches, num_patches + int(vim.with_cls_token), vim.removed_per_layer(grid_size),
                     vim.reduction.reducer if vim.reduction is not None else None, directions,
                     vim.reduction.reactivate_at if vim.reduction is not None else None).total


@HOOKS.register_module()
class ReductionInfoHook(Hook):
    """Reports the token reduction in use and the backbone GFLOPs per image actually run during
    testing (every forward's real input grid; an image's sliding-window crops add up), next to the
    metrics, so logs and the metrics json carry them. Images are keyed by path and gathered from
    all ranks, so distributed runs (whose samplers pad ranks with repeated images) report the same
    numbers as one process."""
    # Before RuntimeInfoHook (VERY_HIGH), which hands the metrics to the logger and the json files.
    priority = 'HIGHEST'

    def before_test_epoch(self, runner):
        self._vim = find_vim(runner.model)
        self._batch = [0., 0.]  # one-direction, both-direction FLOPs of the current batch's forwards
        self._images = {}  # image key -> (one-direction, both-direction) FLOPs
        if self._vim is None:
            return
        runner.logger.info(f'token reduction: {self._vim.reduction}')
        self._handle = self._vim.patch_embed.register_forward_hook(self._count)

    def _count(self, module, inputs, output):
        grid, batch = output[1], output[0].shape[0]
        self._batch[0] += batch * backbone_flops(self._vim, grid, 1)
        self._batch[1] += batch * backbone_flops(self._vim, grid, 2)

    def after_test_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if self._vim is None:
            return
        samples = data_batch['data_samples']
        for i, sample in enumerate(samples):
            key = sample.metainfo.get('img_path', (get_rank(), batch_idx, i))
            self._images[key] = tuple(flops / len(samples) for flops in self._batch)
        self._batch = [0., 0.]

    def after_test_epoch(self, runner, metrics=None):
        if self._vim is None:
            return
        self._handle.remove()
        images = {}
        for rank_images in all_gather_object(self._images):
            images.update(rank_images)
        if metrics is not None and images:
            metrics['backbone_gflops'] = round(sum(one for one, _ in images.values()) / len(images) / 1e9, 4)
            metrics['backbone_gflops_2dir'] = round(sum(both for _, both in images.values()) / len(images) / 1e9, 4)
            metrics['reduction'] = 'none' if self._vim.reduction is None else type(self._vim.reduction.reducer).__name__
