# Vim image classifier: the official network (backbone.vim.*) + linear head (head.fc = official `head`).
model = dict(
    type='ImageClassifier',
    data_preprocessor=dict(
        num_classes=1000, mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True),
    backbone=dict(type='VimBackbone', arch='tiny', img_size=224, patch_size=16, stride=16, out_type='cls'),
    neck=None,
    head=dict(type='LinearClsHead', num_classes=1000, in_channels=192,
              loss=dict(type='CrossEntropyLoss', loss_weight=1.0), topk=(1, 5)))
