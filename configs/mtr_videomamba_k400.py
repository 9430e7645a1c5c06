# Kinetics-400 video classification with MTR: VideoMamba-T, 8 frames, 40 % fewer FLOPs. Pick another
# size from configs/mtr_videomamba_k400/, another method with
# --cfg-options model.backbone.reduction.method=tome.
_base_ = './mtr_videomamba_k400/mtr_videomamba_tiny_k400_f8_r40.py'
