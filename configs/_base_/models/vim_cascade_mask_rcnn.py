# Cascade Mask R-CNN on a plain Vim backbone, the ViTDet recipe used by the Vim paper (COCO,
# Vim-T: 45.7 box AP, 39.2 mask AP): the block output (residual + hidden) of the last layer as ONE
# stride-16 map -> simple feature pyramid (strides 4-32 + a max-pooled stride 64) -> mmdet's
# Cascade Mask R-CNN with ViTDet's heads: 2-conv RPN head, 4conv1fc box heads and mask head with
# LayerNorm, class-agnostic box regression.
norm_cfg = dict(type='LN2d', eps=1e-6)  # registered by mtr_mm.models
embed_dims = 192
model = dict(
    type='CascadeRCNN',
    data_preprocessor=dict(
        type='DetDataPreprocessor', mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375],
        # Pads every batch to the 1024x1024 square of LSJ training (test images: longer side 1024).
        # Padding here, not with the Pad transform, keeps img_shape the real image: boxes are clipped
        # to it, never to the padding (where mask pasting would fail).
        bgr_to_rgb=True, pad_mask=True, pad_size_divisor=1024),
    backbone=dict(
        type='VimBackbone', arch='tiny', img_size=1024, patch_size=16, stride=16, out_type='featmap',
        # fine-tuning: the leaves set init_cfg=dict(type='Pretrained', checkpoint=<Vim classification file>)
        out_indices=[23], feature='block', drop_path_rate=0.1),
    neck=dict(type='SimpleFeaturePyramid', in_channels=embed_dims, out_channels=256, scales=(4, 2, 1, 0.5),
              num_outs=5, norm_cfg=norm_cfg),
    rpn_head=dict(
        type='RPNHead', in_channels=256, feat_channels=256, num_convs=2,
        anchor_generator=dict(type='AnchorGenerator', scales=[8], ratios=[0.5, 1.0, 2.0], strides=[4, 8, 16, 32, 64]),
        bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[.0, .0, .0, .0], target_stds=[1.0, 1.0, 1.0, 1.0]),
        loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=True, loss_weight=1.0),
        loss_bbox=dict(type='L1Loss', loss_weight=1.0)),
    roi_head=dict(
        type='CascadeRoIHead', num_stages=3, stage_loss_weights=[1, 0.5, 0.25],
        bbox_roi_extractor=dict(type='SingleRoIExtractor', out_channels=256, featmap_strides=[4, 8, 16, 32],
                                roi_layer=dict(type='RoIAlign', output_size=7, sampling_ratio=0)),
        # one box head per stage, regression targets tighter at each stage
        bbox_head=[
            dict(type='Shared4Conv1FCBBoxHead', in_channels=256, conv_out_channels=256, fc_out_channels=1024,
                 roi_feat_size=7, num_classes=80, norm_cfg=norm_cfg, reg_class_agnostic=True,
                 bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0., 0., 0., 0.], target_stds=stds),
                 loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
                 loss_bbox=dict(type='SmoothL1Loss', beta=1.0, loss_weight=1.0))
            for stds in ([0.1, 0.1, 0.2, 0.2], [0.05, 0.05, 0.1, 0.1], [0.033, 0.033, 0.067, 0.067])],
        mask_roi_extractor=dict(type='SingleRoIExtractor', out_channels=256, featmap_strides=[4, 8, 16, 32],
                                roi_layer=dict(type='RoIAlign', output_size=14, sampling_ratio=0)),
        mask_head=dict(type='FCNMaskHead', num_convs=4, in_channels=256, conv_out_channels=256, num_classes=80,
                       norm_cfg=norm_cfg, loss_mask=dict(type='CrossEntropyLoss', use_mask=True, loss_weight=1.0))),
    train_cfg=dict(
        rpn=dict(
            assigner=dict(type='MaxIoUAssigner', pos_iou_thr=0.7, neg_iou_thr=0.3, min_pos_iou=0.3,
                          match_low_quality=True, ignore_iof_thr=-1),
            sampler=dict(type='RandomSampler', num=256, pos_fraction=0.5, neg_pos_ub=-1, add_gt_as_proposals=False),
            allowed_border=-1, pos_weight=-1, debug=False),
        rpn_proposal=dict(nms_pre=2000, max_per_img=2000, nms=dict(type='nms', iou_threshold=0.7), min_bbox_size=0),
        # one assigner per stage, IoU threshold rising 0.5 / 0.6 / 0.7
        rcnn=[
            dict(assigner=dict(type='MaxIoUAssigner', pos_iou_thr=iou, neg_iou_thr=iou, min_pos_iou=iou,
                               match_low_quality=False, ignore_iof_thr=-1),
                 sampler=dict(type='RandomSampler', num=512, pos_fraction=0.25, neg_pos_ub=-1,
                              add_gt_as_proposals=True),
                 mask_size=28, pos_weight=-1, debug=False)
            for iou in (0.5, 0.6, 0.7)]),
    test_cfg=dict(
        rpn=dict(nms_pre=1000, max_per_img=1000, nms=dict(type='nms', iou_threshold=0.7), min_bbox_size=0),
        rcnn=dict(score_thr=0.05, nms=dict(type='nms', iou_threshold=0.5), max_per_img=100, mask_thr_binary=0.5)))
