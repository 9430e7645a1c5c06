# VideoMamba video classifier in mmaction2: the official network (backbone.vim.*) reads each view
# (B*V, 3, T, H, W) and returns its normed class feature; TimeSformerHead is the official linear
# `head` (cls_head.fc_cls) and averages the views' softmax ('prob'), VideoMamba's test protocol.
model = dict(
    type='Recognizer3D',
    backbone=dict(type='VideoMambaBackbone', arch='videomamba_tiny', num_frames=8, tubelet_size=1, img_size=224),
    cls_head=dict(type='TimeSformerHead', num_classes=400, in_channels=192, average_clips='prob'),
    data_preprocessor=dict(type='ActionDataPreprocessor', mean=[123.675, 116.28, 103.53],
                           std=[58.395, 57.12, 57.375], format_shape='NCTHW'))
