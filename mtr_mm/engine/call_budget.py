"""Training that spans several calls of limited length: each call stops in time with a
checkpoint, and the next one resumes from it (``tools/train.py --resume``)."""
import time
from typing import Optional

from mmengine.hooks import CheckpointHook, Hook
from mmengine.registry import HOOKS


@HOOKS.register_module()
class CallBudgetHook(Hook):
    """Ends this call's training after ``seconds`` of training or ``iters`` iterations, whichever
    comes first, saving a resumable checkpoint (weights, optimizer, schedulers, EMA, through the
    ``CheckpointHook``, which also records it in ``work_dir/last_checkpoint``) unless the
    ``CheckpointHook`` has just saved this iteration. The schedule itself is untouched: its
    ``max_iters`` is reached over as many calls as it needs."""
    priority = 'LOWEST'  # after the CheckpointHook's own saving

    def __init__(self, seconds: Optional[float] = None, iters: Optional[int] = None):
        self.seconds, self.iters = seconds, iters

    def before_train(self, runner):
        self._begin, self._first_iter = time.perf_counter(), runner.iter

    def spent(self, runner) -> bool:
        done = runner.iter + 1 - self._first_iter
        return (self.iters is not None and done >= self.iters) or \
            (self.seconds is not None and time.perf_counter() - self._begin >= self.seconds)

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None):
        if runner.iter + 1 >= runner.max_iters or not self.spent(runner):
            return
        checkpoint_hook = next(h for h in runner.hooks if isinstance(h, CheckpointHook))
        if not checkpoint_hook.every_n_train_iters(runner, checkpoint_hook.interval, checkpoint_hook.save_begin):
            runner.logger.info(f'call budget spent: saving at {runner.iter + 1} iterations')
            checkpoint_hook._save_checkpoint(runner)
        runner.logger.info(f'call budget spent: stopping at {runner.iter + 1} / {runner.max_iters} iterations; '
                           'continue with tools/train.py --resume')
        runner.train_loop.stop_training = True
