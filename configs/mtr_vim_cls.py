# ImageNet classification with MTR: Vim-T at 40 % fewer FLOPs. Pick another size/ratio from
# configs/mtr/, another method with --cfg-options model.backbone.reduction.method=tome.
_base_ = './mtr/mtr_vim_tiny_in1k_r40.py'
