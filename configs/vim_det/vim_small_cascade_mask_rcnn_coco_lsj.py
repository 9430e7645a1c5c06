# Vim-S + Cascade Mask R-CNN (ViTDet recipe), COCO, LSJ 1024, 100 epochs.
_base_ = ['./vim_tiny_cascade_mask_rcnn_coco_lsj.py']
model = dict(backbone=dict(arch='small', init_cfg=dict(checkpoint='checkpoints/vim_s_midclstok_80p5acc.pth')),
             neck=dict(in_channels=384))
