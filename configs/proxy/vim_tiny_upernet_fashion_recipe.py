# Vim-T + UperNet (as shipped: configs/vim_seg/vim_tiny_upernet_fashion_512.py) trained on the
# Fashion-MNIST-on-photos scenes drawn on the fly (mtr_mm.data.gpu_scenes, train garments only),
# with Vim's ADE20K recipe: AdamW, layer-wise lr decay 0.92, linear warm-up then poly (power 1)
# decay to 0, batch 16 of 512x512 crops; plus bf16 AMP and an EMA of the weights. Iteration-based
# and spread over GPU calls like the classifiers (CallBudgetHook, ScheduleSampler,
# ResumingIterBasedTrainLoop: docs/proxy_training.md). The backbone starts from the Fashion Vim-T
# classifier that travels with the repository (demo/checkpoints, joined into work_dirs/vim_t_cls.pth
# by the GPU call), as Vim's segmenter starts from its ImageNet classifier.
# Validation: the seg_val scene files (images/val), test: the seg test files (images/validation),
# both written by tools/data/make_fashion_scenes.py from the test garments.
_base_ = ['../vim_seg/vim_tiny_upernet_fashion_512.py', '../_base_/training_calls.py']

custom_imports = dict(imports=['mtr_mm.models', 'mtr_mm.engine', 'mtr_mm.engine.training_calls',
                               'mtr_mm.data.generated_datasets'], allow_failed_imports=False)

batch_size = 16  # Vim's ADE20K batch (4 GPUs x 4)
# ~12-15 min of H200 at an estimated 0.2-0.25 s / iteration (docs/proxy_training.md says how it
# was estimated: not measured; the probe of call 1 measures it and shortens the schedule if needed).
max_iters = {{'$PROXY_MAX_ITERS:3600'}}  # or $PROXY_MAX_ITERS (tools/proxy_call.sh)
warmup_iters = 150  # Vim: 1500 of 160k; a short schedule needs a larger share
model = dict(backbone=dict(init_cfg=dict(type='Pretrained', checkpoint='work_dirs/vim_t_cls.pth')))

# Scenes drawn on the fly (device='cuda' draws them on the GPU, with num_workers=0), in the base's loader
# with the schedule's sampler and workers (configs/_base_/training_calls.py).
train_dataloader = dict(
    _base_.schedule_train_loader, batch_size=batch_size, sampler=dict(_delete_=True, type='ScheduleSampler'),
    dataset=dict(_delete_=True, type='FashionScenesSegDataset', split='train', num_samples=max_iters * batch_size,
                 pipeline={{_base_.train_pipeline}}, device='cpu'))  # its loading steps skipped
val_dataloader = dict(
    batch_size=batch_size, num_workers=4,
    dataset=dict(data_prefix=dict(img_path='images/val', seg_map_path='annotations/val')))
test_dataloader = dict(batch_size=batch_size, num_workers=4)  # the base's: images/validation

optim_wrapper = dict(type='AmpOptimWrapper', dtype='bfloat16', optimizer=dict(lr=2e-4))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=warmup_iters),
    dict(type='PolyLR', power=1.0, eta_min=0.0, by_epoch=False, begin=warmup_iters, end=max_iters),
]
train_cfg = dict(type='ResumingIterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters // 4)
default_hooks = dict(
    logger=dict(interval=25),
    checkpoint=dict(interval=100000, max_keep_ckpts=1, save_last=True, save_best='mIoU', rule='greater'))
custom_hooks = {{_base_.training_call_hooks}}  # configs/_base_/training_calls.py
randomness = dict(seed=0, deterministic=False)
