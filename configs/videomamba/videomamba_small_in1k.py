# Official VideoMamba-S image model (OpenGVLab/VideoMamba, checkpoint videomamba_s16_in1k_res224.pth;
# published top-1 81.2), ImageNet-1k val with the same evaluation as Vim (256 bicubic, crop 224).
_base_ = ['../_base_/models/vim_cls.py', '../_base_/datasets/imagenet_val.py', '../_base_/default_runtime_cls.py']
model = dict(backbone=dict(arch='videomamba_small'), head=dict(in_channels=384))
