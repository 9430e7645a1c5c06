# MTR on VideoMamba-S, Kinetics-400 8 frames: 40 % fewer FLOPs per view, training-free; tokens are
# reduced over the whole space-time sequence (1 + 8 x 196 tokens per view).
_base_ = ['../videomamba_k400/videomamba_small_k400_f8.py', '../_base_/reductions/mtr.py']
model = dict(backbone=dict(reduction={{_base_.reduction}}))
