# Vim-T trained from scratch on the Fashion-MNIST-on-photos images (mtr_mm.data.gpu_scenes) with
# the Vim / DeiT recipe: AdamW + cosine with linear warm-up, label smoothing, RandAugment,
# Mixup / CutMix, random erasing, drop path, EMA of the weights, bf16 AMP. Iteration-based, so a
# schedule spans as many GPU calls as it needs: every call ends within its budget with a
# checkpoint (CallBudgetHook) and the next resumes from it (tools/train.py --resume) with the
# images that follow (ScheduleSampler, ResumingIterBasedTrainLoop); the
# learning curves are work_dir/*/vis_data/scalars.json. See docs/proxy_training.md.
#
# Differences from the ImageNet recipe (Vim's main.py), for this data:
# - no RandomResizedCrop / flip: the generator already draws each garment at a random scale
#   (48-160 px), position and mirroring; a crop of 8 % of the image would often cut it away;
# - no repeated augmentation (one GPU);
# - EMA momentum 8 / max_iters (ScheduleEMAHook) instead of 4e-5 (decay 0.99996): the schedule is
#   ~2k, not 375k, iterations, and the average must forget its random start ((1 - 8 / N) ** N = e^-8).
_base_ = ['../_base_/models/vim_cls.py', '../_base_/default_runtime_cls.py', '../_base_/training_calls.py']

custom_imports = dict(imports=['mtr_mm.models', 'mtr_mm.engine', 'mtr_mm.engine.training_calls',
                               'mtr_mm.data.generated_datasets'], allow_failed_imports=False)

num_classes = 10
train_images_per_epoch = 55_000  # the train garments (gpu_scenes: 60,000 - VAL_GARMENTS)
batch_size = 256
# One GPU session holds one machine for <= 30 min, so a schedule must end inside it (the resumable
# state cannot travel between sessions beside the data: docs/proxy_training.md). Default 12 epochs
# (2,568 iterations); $PROXY_MAX_ITERS sets another length, and the cosine's end, the EMA momentum
# and the images drawn follow it (the warm-up is one epoch, at most a fifth of the schedule):
# tools/proxy_call.sh sets it from the rate its probe measures.
iters_per_epoch = train_images_per_epoch // batch_size
max_iters = {{'$PROXY_MAX_ITERS:2568'}}
warmup_iters = min(iters_per_epoch, max_iters // 5)
base_lr = 5e-4 * batch_size / 512  # Vim: 5e-4 per 512 images
drop_path_rate = 0.0               # Vim-T: 0.0, Vim-S: 0.05

model = dict(
    data_preprocessor=dict(num_classes=num_classes),
    backbone=dict(drop_path_rate=drop_path_rate),
    head=dict(num_classes=num_classes, topk=(1, ),
              loss=dict(_delete_=True, type='LabelSmoothLoss', label_smooth_val=0.1, mode='original',
                        loss_weight=1.0)),
    train_cfg=dict(augments=[dict(type='Mixup', alpha=0.8), dict(type='CutMix', alpha=1.0)]))

# BGR images (the dataset hands them over as LoadImageFromFile would); fill with the mean colour
bgr_mean = [103.53, 116.28, 123.675]
bgr_std = [57.375, 57.12, 58.395]
train_pipeline = [
    dict(type='RandAugment', policies='timm_increasing', num_policies=2, total_level=10, magnitude_level=9,
         magnitude_std=0.5, hparams=dict(pad_val=[round(x) for x in bgr_mean], interpolation='bicubic')),
    dict(type='RandomErasing', erase_prob=0.25, mode='rand', min_area_ratio=0.02, max_area_ratio=1 / 3,
         fill_color=bgr_mean, fill_std=bgr_std),
    dict(type='PackInputs'),
]
generated_eval_pipeline = [dict(type='PackInputs')]
# The test set is read from files: the 10,000 images of fashion_scenes' 'cls_test' part (gpu_scenes'
# test split) that tools/data/make_fashion_scenes.py --cls-test 10000 --cls-folder writes, the set
# every evaluation of this repository (tools/test.py, compare_reductions) reads.
test_pipeline = [dict(type='LoadImageFromFile'), dict(type='ResizeEdge', scale=224, edge='short'),
                 dict(type='CenterCrop', crop_size=224), dict(type='PackInputs')]

# data_device='cuda' draws the images on the GPU, but needs num_workers=0 (the augmentations then
# run in the main process); 'cpu' draws them in the workers. docs/proxy_training.md: measure both.
data_device = 'cpu'
# gpu_scenes orders the train garments anew every epoch; the loader: configs/_base_/training_calls.py
train_dataloader = dict(
    **_base_.schedule_train_loader, batch_size=batch_size, collate_fn=dict(type='default_collate'),
    dataset=dict(type='FashionScenesClsDataset', split='train', num_samples=max_iters * batch_size,
                 pipeline=train_pipeline, device=data_device))
val_dataloader = dict(
    batch_size=batch_size, num_workers=4, persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type='FashionScenesClsDataset', split='val', num_samples=5000, pipeline=generated_eval_pipeline))
test_dataloader = dict(
    batch_size=batch_size, num_workers=4, persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='CustomDataset', data_root='data/fashion_scenes/cls', data_prefix='images',
                 ann_file='meta/test.txt', with_label=True, pipeline=test_pipeline))
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_evaluator = val_evaluator

optim_wrapper = dict(
    type='AmpOptimWrapper', dtype='bfloat16',
    optimizer=dict(type='AdamW', lr=base_lr, weight_decay=0.05, betas=(0.9, 0.999), eps=1e-8),
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0, flat_decay_mult=0.0,
                       custom_keys={'.pos_embed': dict(decay_mult=0.0), '.cls_token': dict(decay_mult=0.0)}))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=warmup_iters),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=False, begin=warmup_iters, end=max_iters),
]
train_cfg = dict(type='ResumingIterBasedTrainLoop', max_iters=max_iters, val_interval=2 * iters_per_epoch)
val_cfg = dict()
test_cfg = dict()

default_hooks = dict(
    logger=dict(type='MainProcessLoggerHook', interval=50, log_metric_by_epoch=False),  # val curves by iteration
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=1000, max_keep_ckpts=1, save_last=True,
                    save_best='accuracy/top1', rule='greater'))
log_processor = dict(by_epoch=False)
custom_hooks = {{_base_.training_call_hooks}}  # configs/_base_/training_calls.py
randomness = dict(seed=0, deterministic=False)
