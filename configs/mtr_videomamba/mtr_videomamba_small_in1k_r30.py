# MTR on VideoMamba-S (ImageNet-1k): 30 % fewer FLOPs, training-free.
_base_ = './mtr_videomamba_small_in1k_r40.py'
model = dict(backbone=dict(reduction=dict(schedule=dict(flops_reduction=0.30))))
