# MTR on Vim-S + UperNet (ADE20K): 30 % fewer backbone FLOPs, training-free.
_base_ = './mtr_vim_small_upernet_ade20k_r40.py'
model = dict(backbone=dict(reduction=dict(schedule=dict(flops_reduction=0.30))))
