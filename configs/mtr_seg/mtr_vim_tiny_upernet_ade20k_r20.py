# MTR on Vim-T + UperNet (ADE20K): 20 % fewer backbone FLOPs, training-free.
_base_ = './mtr_vim_tiny_upernet_ade20k_r40.py'
model = dict(backbone=dict(reduction=dict(schedule=dict(flops_reduction=0.20))))
