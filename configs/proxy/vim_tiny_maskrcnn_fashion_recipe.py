# Vim-T + Cascade Mask R-CNN (as shipped: configs/vim_det/vim_tiny_cascade_mask_rcnn_coco_lsj.py,
# the ViTDet recipe: LSJ 1024, AdamW, layer-wise lr decay 0.7, step decay) trained on the
# Fashion-MNIST-on-photos detection scenes drawn on the fly (mtr_mm.data.gpu_scenes.det_batch,
# train garments only; 640x480, 2-6 garments with boxes and instance masks, 10 classes), plus
# bf16 AMP and an EMA of the weights. Iteration-based and spread over GPU calls like the
# classifiers (CallBudgetHook, ScheduleSampler, ResumingIterBasedTrainLoop: docs/proxy_training.md).
# The backbone starts from the Fashion Vim-T classifier that travels with the repository
# (demo/checkpoints, joined into work_dirs/vim_t_cls.pth by the GPU call).
# Validation / test: the COCO-layout files of tools/data/make_fashion_scenes.py (det_val scenes:
# valsplit2017, det test scenes: val2017, test garments), mmdet's CocoMetric, bbox + segm.
# mmcv without CUDA ops (tools/proxy_gpu_setup.sh): NMS and RoIAlign of CUDA tensors run
# torchvision's kernels (mtr_mm.ops.mmcv_cuda_fallback, imported below).
_base_ = ['../vim_det/vim_tiny_cascade_mask_rcnn_coco_lsj.py', '../_base_/training_calls.py']

custom_imports = dict(imports=['mtr_mm.models', 'mtr_mm.engine', 'mtr_mm.engine.training_calls',
                               'mtr_mm.data.generated_datasets', 'mtr_mm.ops.mmcv_cuda_fallback'],
                      allow_failed_imports=False)

num_classes = 10
batch_size = 16  # ViTDet: 64 (16 GPUs x 4)
# ~15 min of H200 at an estimated ~1 s / iteration (docs/proxy_training.md says how it was
# estimated: not measured; the probe of call 1 measures it and shortens the schedule if needed).
max_iters = {{'$PROXY_MAX_ITERS:900'}}  # or $PROXY_MAX_ITERS (tools/proxy_call.sh)
warmup_iters = 50
# mmengine replaces lists whole: the base's three cascade box heads, with 10 classes.
model = dict(
    backbone=dict(init_cfg=dict(type='Pretrained', checkpoint='work_dirs/vim_t_cls.pth')),
    roi_head=dict(
        bbox_head=[
            dict(type='Shared4Conv1FCBBoxHead', in_channels=256, conv_out_channels=256, fc_out_channels=1024,
                 roi_feat_size=7, num_classes=num_classes, norm_cfg=dict(type='LN2d', eps=1e-6),
                 reg_class_agnostic=True,
                 bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0., 0., 0., 0.], target_stds=stds),
                 loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
                 loss_bbox=dict(type='SmoothL1Loss', beta=1.0, loss_weight=1.0))
            for stds in ([0.1, 0.1, 0.2, 0.2], [0.05, 0.05, 0.1, 0.1], [0.033, 0.033, 0.067, 0.067])],
        mask_head=dict(num_classes=num_classes)))

data_root = 'data/fashion_scenes/det/'
metainfo = dict(classes=('T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker',
                         'Bag', 'Ankle boot'))
# Scenes drawn on the fly (device='cuda' draws them on the GPU, with num_workers=0), in the base's loader
# with the schedule's sampler and workers (configs/_base_/training_calls.py).
train_dataloader = dict(
    _base_.schedule_train_loader, batch_size=batch_size, sampler=dict(_delete_=True, type='ScheduleSampler'),
    dataset=dict(_delete_=True, type='FashionScenesDetDataset', split='train', num_samples=max_iters * batch_size,
                 pipeline={{_base_.train_pipeline}}, device='cpu'))  # its loading steps skipped
val_dataloader = dict(
    batch_size=1, num_workers=4,
    dataset=dict(data_root=data_root, metainfo=metainfo, ann_file='annotations/instances_valsplit2017.json',
                 data_prefix=dict(img='valsplit2017/')))
test_dataloader = dict(
    batch_size=1, num_workers=4, persistent_workers=False,
    dataset=dict(data_root=data_root, metainfo=metainfo, ann_file='annotations/instances_val2017.json',
                 data_prefix=dict(img='val2017/')))
val_evaluator = dict(ann_file=data_root + 'annotations/instances_valsplit2017.json')
test_evaluator = dict(ann_file=data_root + 'annotations/instances_val2017.json')

optim_wrapper = dict(type='AmpOptimWrapper', dtype='bfloat16', optimizer=dict(lr=2e-4))
# ViTDet: warm-up 250 iterations, lr x 0.1 at 89 % and 96 % of the schedule
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=warmup_iters),
    dict(type='MultiStepLR', by_epoch=False, begin=0, end=max_iters, gamma=0.1,
         milestones=[int(max_iters * 0.89), int(max_iters * 0.96)]),
]
train_cfg = dict(type='ResumingIterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters // 2,
                 dynamic_intervals=None)
default_hooks = dict(
    logger=dict(interval=25),
    checkpoint=dict(interval=100000, max_keep_ckpts=1, save_last=True, save_best='coco/bbox_mAP', rule='greater'))
custom_hooks = {{_base_.training_call_hooks}}  # configs/_base_/training_calls.py
randomness = dict(seed=0, deterministic=False)
