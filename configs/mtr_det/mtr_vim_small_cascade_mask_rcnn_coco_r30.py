# MTR on Vim-S + Cascade Mask R-CNN (COCO): 30 % fewer backbone FLOPs, training-free.
_base_ = './mtr_vim_small_cascade_mask_rcnn_coco_r40.py'
model = dict(backbone=dict(reduction=dict(schedule=dict(flops_reduction=0.30))))
