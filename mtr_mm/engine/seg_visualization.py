"""mmseg's picture hook for test-only runs (tools/test.py --show-dir on a segmentation config)."""
from types import SimpleNamespace

from mmseg.engine.hooks import SegVisualizationHook
from mmseg.registry import HOOKS


@HOOKS.register_module()
class SegTestVisualizationHook(SegVisualizationHook):
    """mmseg's hook without its need of a training set: it numbers the pictures with ``runner.iter``,
    which builds the training loop and its dataset (absent when only testing); the batch index
    numbers them here."""

    def _after_iter(self, runner, batch_idx, data_batch, outputs, mode='val'):
        super()._after_iter(SimpleNamespace(iter=batch_idx), batch_idx, data_batch, outputs, mode)
