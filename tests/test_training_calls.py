"""ScheduleEMAHook: the EMA momentum follows the schedule's length, so the average forgets its random
start by the end of any schedule (checked against the closed form of the recursion). CallBudgetHook's
deadline: a Unix time, the clock tools/proxy_call.sh also ends the process by."""
import time
from types import SimpleNamespace

import pytest
import torch

from mtr_mm.engine.training_calls import CallBudgetHook, ScheduleEMAHook


@pytest.mark.parametrize('max_iters', [400, 2427])
def test_momentum_follows_the_schedule(max_iters):
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    hook = ScheduleEMAHook(forget=8)
    hook.before_run(SimpleNamespace(model=model, max_iters=max_iters))
    start = model.weight.detach().clone()
    hook.ema_model.update_parameters(model)  # the first iteration: the average starts as the weights
    with torch.no_grad():
        model.weight.zero_()  # training moved the weights to 0: what is left of the start is its share
    for _ in range(max_iters - 1):
        hook.ema_model.update_parameters(model)
    left = hook.ema_model.module.weight / start
    assert torch.allclose(left, torch.full_like(left, (1 - 8 / max_iters) ** (max_iters - 1)), rtol=1e-3)
    assert left.max() < 4e-4  # about e^-8, whatever the length


def test_an_explicit_momentum_wins_and_testing_averages_nothing():
    model = torch.nn.Linear(3, 2)
    hook = ScheduleEMAHook(forget=8, momentum=0.1)
    hook.before_run(SimpleNamespace(model=model, max_iters=400))
    assert hook.ema_model.momentum == 0.1
    hook = ScheduleEMAHook(forget=8)
    hook.before_run(SimpleNamespace(model=model, max_iters=0))  # a test run: no schedule, no division by it
    assert 'momentum' not in hook.ema_cfg


def test_the_budget_deadline_is_a_unix_time():
    runner = SimpleNamespace(iter=10)
    for deadline, spent in ((time.time() - 1, True), (time.time() + 3600, False)):
        hook = CallBudgetHook(deadline=deadline)
        hook.before_train(runner)
        assert hook.spent(runner) is spent
    hook = CallBudgetHook(seconds=3600, iters=3, deadline=time.time() + 3600)  # whichever comes first
    hook.before_train(runner)
    assert not hook.spent(SimpleNamespace(iter=11)) and hook.spent(SimpleNamespace(iter=12))
