# Object detection / instance segmentation with MTR: Vim-T + Cascade Mask R-CNN on COCO at 40 %
# fewer backbone FLOPs. Pick another size/ratio from configs/mtr_det/.
_base_ = './mtr_det/mtr_vim_tiny_cascade_mask_rcnn_coco_r40.py'
