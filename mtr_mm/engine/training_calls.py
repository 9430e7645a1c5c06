"""Training that spans several calls of limited length: each call stops in time with a
checkpoint (:class:`CallBudgetHook`), and the next one resumes from it (``tools/train.py
--resume``) without drawing again the images already trained on (:class:`ScheduleSampler`,
:class:`ResumingIterBasedTrainLoop`): generated images cost as much to skip as to train on."""
import itertools
import time
from typing import Iterator, Optional

from mmengine.dist import get_dist_info
from mmengine.hooks import CheckpointHook, EMAHook, Hook
from mmengine.registry import DATA_SAMPLERS, HOOKS, LOOPS
from mmengine.runner.loops import IterBasedTrainLoop, _InfiniteDataloaderIterator
from torch.utils.data import Sampler


@HOOKS.register_module()
class ScheduleEMAHook(EMAHook):
    """mmengine's ``EMAHook`` with the momentum set by the schedule, ``forget / max_iters``: at the end
    of a schedule of any length the average keeps e^-forget of the first iteration's weights (a fixed
    momentum sized for one length keeps most of them after a shorter one: (1 - 2e-4)^2,400 = 62 %).
    An explicit ``momentum`` wins; without a training schedule (testing) nothing is averaged."""

    def __init__(self, forget: float = 8., **kwargs):
        super().__init__(**kwargs)
        self.forget = forget

    def before_run(self, runner):
        if runner.max_iters and 'momentum' not in self.ema_cfg:
            self.ema_cfg['momentum'] = self.forget / runner.max_iters
        super().before_run(runner)


@HOOKS.register_module()
class CallBudgetHook(Hook):
    """Ends this call's training after ``seconds`` of training, ``iters`` iterations or at the Unix
    time ``deadline`` (a clock shared with whoever ends the process: tools/proxy_call.sh),
    whichever comes first, saving a resumable checkpoint (weights, optimizer, schedulers, EMA, through the
    ``CheckpointHook``, which also records it in ``work_dir/last_checkpoint``) unless the
    ``CheckpointHook`` has just saved this iteration. The schedule itself is untouched: its
    ``max_iters`` is reached over as many calls as it needs."""
    priority = 'LOWEST'  # after the CheckpointHook's own saving

    def __init__(self, seconds: Optional[float] = None, iters: Optional[int] = None, deadline: Optional[float] = None):
        self.seconds, self.iters, self.deadline = seconds, iters, deadline

    def before_train(self, runner):
        self._begin, self._first_iter = time.perf_counter(), runner.iter

    def spent(self, runner) -> bool:
        done = runner.iter + 1 - self._first_iter
        return (self.iters is not None and done >= self.iters) or \
            (self.seconds is not None and time.perf_counter() - self._begin >= self.seconds) or \
            (self.deadline is not None and time.time() >= self.deadline)

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


@DATA_SAMPLERS.register_module()
class ScheduleSampler(Sampler):
    """Image indices ``start, start + 1, ...`` without end, each rank every ``world_size``-th: the
    k-th image of the whole schedule is image k of the dataset (``gpu_scenes`` gives every index
    its own image, and the garments a new order every epoch), so nothing repeats and a resumed
    run continues the sequence from ``start``."""

    def __init__(self, dataset, start: int = 0, seed: Optional[int] = None):  # the Runner passes a seed
        self.dataset, self.start = dataset, start
        self.rank, self.world_size = get_dist_info()

    def __iter__(self) -> Iterator[int]:
        return itertools.count(self.start + self.rank, self.world_size)

    def __len__(self) -> int:
        return len(self.dataset)

    def set_epoch(self, epoch: int) -> None:  # DistSamplerSeedHook's interface; the order is fixed
        pass


class _SkipFirst:
    """An iterator whose first ``count`` items are ``None``, drawn from nothing."""

    def __init__(self, iterator, count: int):
        self.iterator, self.count = iterator, count

    def __next__(self):
        if self.count > 0:
            self.count -= 1
            return None
        return next(self.iterator)


@LOOPS.register_module()
class ResumingIterBasedTrainLoop(IterBasedTrainLoop):
    """mmengine's ``IterBasedTrainLoop``, except that a resumed run does not draw (and throw
    away) the batches already trained on: its ``ScheduleSampler`` starts at the first image not
    trained on, and the batches the parent loop would skip are never made."""

    def run(self):
        if self._iter > 0:
            sampler = self.dataloader.sampler
            if not isinstance(sampler, ScheduleSampler):
                raise TypeError(f'{type(self).__name__} resumes with a ScheduleSampler, got {type(sampler).__name__}')
            sampler.start = self._iter * self.dataloader.batch_size * sampler.world_size
            self.dataloader_iterator = _SkipFirst(_InfiniteDataloaderIterator(self.dataloader), self._iter)
        return super().run()
