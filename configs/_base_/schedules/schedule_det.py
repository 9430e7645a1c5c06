# ViTDet's 100-epoch COCO schedule (184375 iterations x 64 images; 16 GPUs x 4), as in the Vim
# detection configs: AdamW lr 1e-4, weight decay 0.1, layer-wise lr decay 0.7 over Vim's layers,
# 250 warm-up iterations, lr x0.1 at epochs 88 and 96.
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.1),
    constructor='VimLayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(decay_rate=0.7))  # num_layers: the backbone depth
max_iters = 184375
interval = 5000
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=250),
    dict(type='MultiStepLR', begin=0, end=max_iters, by_epoch=False, milestones=[163889, 177546], gamma=0.1),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=interval,
                 dynamic_intervals=[(max_iters // interval * interval + 1, max_iters)])  # validate at the end too
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='MainProcessLoggerHook', interval=50, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, save_last=True, interval=interval, max_keep_ckpts=5),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='DetVisualizationHook'))
auto_scale_lr = dict(enable=False, base_batch_size=64)
