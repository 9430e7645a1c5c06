from typing import Optional

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
    testing (every forward's real input grid, e.g. each slide-inference crop), next to the metrics,
    so logs and the metrics json carry them."""
    # Before RuntimeInfoHook (VERY_HIGH), which hands the metrics to the logger and the json files.
    priority = 'HIGHEST'

    def before_test_epoch(self, runner):
        self._vim = find_vim(runner.model)
        self._totals = [0., 0., 0]  # one-direction FLOPs, both-direction FLOPs, images
        if self._vim is None:
            return
        runner.logger.info(f'token reduction: {self._vim.reduction}')
        self._handle = self._vim.patch_embed.register_forward_hook(self._count)

    def _count(self, module, inputs, output):
        grid, batch = output[1], output[0].shape[0]
        self._totals[0] += batch * backbone_flops(self._vim, grid, 1)
        self._totals[1] += batch * backbone_flops(self._vim, grid, 2)
        self._totals[2] += batch

    def after_test_epoch(self, runner, metrics=None):
        if self._vim is None:
            return
        self._handle.remove()
        one, both, images = self._totals
        if metrics is not None and images:
            metrics['backbone_gflops'] = round(one / images / 1e9, 4)
            metrics['backbone_gflops_2dir'] = round(both / images / 1e9, 4)
            metrics['reduction'] = 'none' if self._vim.reduction is None else type(self._vim.reduction.reducer).__name__
