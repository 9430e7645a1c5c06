# Vim-T + UperNet on the Fashion scenes (configs/vim_seg/vim_tiny_upernet_fashion_512.py), fine-tuned from the
# demo classifier (demo/checkpoints/vim_tiny_fashion.pth.part*, joined into work_dirs/vim_t_cls.pth by
# tools/proxy_checkpoint.py join): the segmenter of docs/benchmarks.md section 4 (929 iterations, bf16, H200).
#   SEG_MAX_ITERS  iterations of the schedule (warm-up 100, then linear decay to 0 at SEG_MAX_ITERS)
#   SEG_DEADLINE   Unix time at which CallBudgetHook saves a checkpoint and stops (None: run to the end)
# bf16 AMP from the command line: tools/train.py CONFIG --amp --cfg-options optim_wrapper.dtype=bfloat16
_base_ = ['../vim_seg/vim_tiny_upernet_fashion_512.py']
custom_imports = dict(imports=['mtr_mm.models', 'mtr_mm.engine', 'mtr_mm.engine.training_calls'],
                      allow_failed_imports=False)
max_iters = {{'$SEG_MAX_ITERS:1600'}}
model = dict(backbone=dict(init_cfg=dict(type='Pretrained', checkpoint='work_dirs/vim_t_cls.pth')))
warmup_iters = max(1, min(100, max_iters // 5))  # the base's 100 (a CPU dry run of 2 iterations: 1)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=warmup_iters),
    dict(type='PolyLR', power=1.0, eta_min=0.0, by_epoch=False, begin=warmup_iters, end=max_iters),
]
# the final validation (on the 300 test scenes: the base's val set is its test set) = the unreduced test
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
# not persistent: persistent (pinned) workers delayed the process's exit by 70-85 s on the GPU machine
train_dataloader = dict(persistent_workers=False)
val_dataloader = dict(persistent_workers=False)
test_dataloader = dict(persistent_workers=False)
default_hooks = dict(checkpoint=dict(interval=400, max_keep_ckpts=1, save_last=True), logger=dict(interval=25))
custom_hooks = [dict(type='ReductionInfoHook'), dict(type='InputCheckHook'), dict(type='CollectUnderWorkDirHook'),
                dict(type='CallBudgetHook', deadline={{'$SEG_DEADLINE:None'}})]
