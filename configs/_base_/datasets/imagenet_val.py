# ImageNet-1k val as evaluated in the Vim paper: shorter side 256 (bicubic, PIL), center crop 224.
dataset_type = 'ImageNet'
data_root = 'data/imagenet'
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=256, edge='short', backend='pillow', interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=224),
    dict(type='PackInputs'),
]
test_dataloader = dict(
    batch_size=64, num_workers=4, persistent_workers=False,
    dataset=dict(type=dataset_type, data_root=data_root, split='val', pipeline=test_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False))
test_evaluator = dict(type='Accuracy', topk=(1, 5))
val_dataloader = test_dataloader
val_evaluator = test_evaluator
test_cfg = dict()
val_cfg = dict()
