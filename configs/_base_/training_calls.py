# The hooks of every training on generated scenes (configs/proxy/): the base hooks (reduction info,
# input checks, result exchange), the EMA of the weights (momentum forget / the schedule's iterations)
# and the per-call budget, custom_hooks.4, whose seconds tools/proxy_call.sh sets each GPU call.
# A leaf takes them as `custom_hooks = {{_base_.training_call_hooks}}` (a second base may not define
# custom_hooks itself: mmengine refuses a key set by two bases).
training_call_hooks = [
    dict(type='ReductionInfoHook'), dict(type='InputCheckHook'), dict(type='CollectUnderWorkDirHook'),
    dict(type='ScheduleEMAHook', forget=8, update_buffers=True, priority='ABOVE_NORMAL'),
    dict(type='CallBudgetHook', seconds=510),
]
