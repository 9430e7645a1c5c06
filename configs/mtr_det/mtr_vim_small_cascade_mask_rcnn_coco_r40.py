# MTR on Vim-S + Cascade Mask R-CNN (COCO): 40 % fewer backbone FLOPs, training-free; layer
# set and restoration mode in _base_/reductions/mtr_dense.py. The detector reads only layer 23, so
# its whole feature map is restored from the tokens left after the last reduction.
_base_ = ['../vim_det/vim_small_cascade_mask_rcnn_coco_lsj.py', '../_base_/reductions/mtr_dense.py']
model = dict(backbone=dict(reduction={{_base_.reduction}}))
