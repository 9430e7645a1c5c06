# MTR on VideoMamba-M (ImageNet-1k): 20 % fewer FLOPs, training-free.
_base_ = './mtr_videomamba_middle_in1k_r40.py'
model = dict(backbone=dict(reduction=dict(schedule=dict(flops_reduction=0.20))))
