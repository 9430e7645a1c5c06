# The hooks of every training on generated scenes (configs/proxy/): the base hooks (reduction info,
# input checks, result exchange), the EMA of the weights (momentum forget / the schedule's iterations)
# and the per-call budget, custom_hooks.4, whose seconds tools/proxy_call.sh sets each GPU call.
# A leaf takes them as `custom_hooks = {{_base_.training_call_hooks}}` (a second base may not define
# custom_hooks itself: mmengine refuses a key set by two bases).
# The train loader of every such schedule, taken as `train_dataloader = dict(**_base_.schedule_train_loader,
# batch_size=..., dataset=...)`: image k of the schedule is image k of the split (ScheduleSampler: never the
# same twice; a resumed call continues from the first image not trained on). Not persistent: the sampler
# never ends, so the workers are made once anyway, and persistent, pinned workers delayed the process's exit
# by 70-85 s on the GPU machine (tools/proxy_call.sh). A leaf whose base has a train loader replaces that
# loader's sampler: `dict(_base_.schedule_train_loader, sampler=dict(_delete_=True, type='ScheduleSampler'), ...)`.
schedule_train_loader = dict(num_workers=12, persistent_workers=False, pin_memory=True,
                             sampler=dict(type='ScheduleSampler'))
training_call_hooks = [
    dict(type='ReductionInfoHook'), dict(type='InputCheckHook'), dict(type='CollectUnderWorkDirHook'),
    dict(type='ScheduleEMAHook', forget=8, update_buffers=True, priority='ABOVE_NORMAL'),
    dict(type='CallBudgetHook', seconds=510),
]
