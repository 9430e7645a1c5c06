# ADE20K fine-tuning of Vim + UperNet: 160k iterations (Vim paper) at 16 images per iteration
# (4 GPUs x 4); optimizer of the released Vim segmentation configs: AdamW lr 1e-4, weight decay
# 0.05, layer-wise lr decay 0.92 over Vim's layers, 1500 linear warm-up iterations, then linear
# (poly, power 1) decay to 0.
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    constructor='VimLayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(decay_rate=0.92))  # num_layers: the backbone depth
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', power=1.0, eta_min=0.0, by_epoch=False, begin=1500, end=160000),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=160000, val_interval=16000)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='MainProcessLoggerHook', interval=50, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=16000, max_keep_ckpts=3),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='SegVisualizationHook'))
