# MTR on VideoMamba-B (ImageNet-1k): 40 % fewer FLOPs, training-free (schedule in _base_/reductions/mtr.py).
_base_ = ['../videomamba/videomamba_base_in1k.py', '../_base_/reductions/mtr.py']
model = dict(backbone=dict(reduction={{_base_.reduction}}))
