# UperNet on a Vim backbone without class token, the Vim paper's ADE20K model: the mixer outputs
# ('hidden') of layers 5/11/17/23 as stride-16 maps, resampled by MultiLevelNeck to strides 4/8/16/32.
# Head widths follow the released Vim configs: UPerHead channels = embed dims (192 for Vim-T,
# 384 for Vim-S) rather than mmseg's 512 for ViT-B; FCN auxiliary head on the layer-17 map.
norm_cfg = dict(type='SyncBN', requires_grad=True)  # plain BN when not distributed (mmengine reverts it)
embed_dims = 192
model = dict(
    type='EncoderDecoder',
    data_preprocessor=dict(
        type='SegDataPreProcessor', mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True, pad_val=0, seg_pad_val=255, size=(512, 512),  # training crops
        # whole-image inference: pad to whole patches (cropped off the prediction again)
        test_cfg=dict(size_divisor=16)),
    backbone=dict(
        type='VimBackbone', arch='tiny', img_size=512, patch_size=16, stride=16, out_type='featmap',
        # fine-tuning: the leaves set init_cfg=dict(type='Pretrained', checkpoint=<Vim classification file>)
        out_indices=[5, 11, 17, 23], feature='hidden', drop_path_rate=0.1),
    neck=dict(type='MultiLevelNeck', in_channels=[embed_dims] * 4, out_channels=embed_dims, scales=[4, 2, 1, 0.5]),
    decode_head=dict(
        type='UPerHead', in_channels=[embed_dims] * 4, in_index=[0, 1, 2, 3], pool_scales=(1, 2, 3, 6),
        channels=embed_dims, dropout_ratio=0.1, num_classes=150, norm_cfg=norm_cfg, align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
    auxiliary_head=dict(
        type='FCNHead', in_channels=embed_dims, in_index=2, channels=256, num_convs=1, concat_input=False,
        dropout_ratio=0.1, num_classes=150, norm_cfg=norm_cfg, align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=0.4)),
    train_cfg=dict(),
    # 'whole' image inference; the released Vim numbers use sliding windows:
    #   --cfg-options model.test_cfg.mode=slide model.test_cfg.crop_size="(512,512)" model.test_cfg.stride="(341,341)"
    test_cfg=dict(mode='whole'))
