# Vim-T + Cascade Mask R-CNN (ViTDet recipe), COCO, LSJ 1024, 100 epochs (Vim paper: 45.7 box AP,
# 39.2 mask AP). Fine-tunes from the classification checkpoint (pos embed resized to 64x64).
_base_ = ['../_base_/models/vim_cascade_mask_rcnn.py', '../_base_/datasets/coco_instance.py',
          '../_base_/schedules/schedule_det.py', '../_base_/default_runtime_det.py']
model = dict(backbone=dict(init_cfg=dict(type='Pretrained', checkpoint='checkpoints/vim_t_midclstok_76p1acc.pth')))
