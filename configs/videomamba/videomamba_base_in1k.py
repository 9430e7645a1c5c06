# Official VideoMamba-B image model (OpenGVLab/VideoMamba, checkpoint videomamba_b16_in1k_res224.pth;
# published top-1 82.7, self-distilled), ImageNet-1k val with the same evaluation as Vim (256 bicubic, crop 224).
_base_ = ['../_base_/models/vim_cls.py', '../_base_/datasets/imagenet_val.py', '../_base_/default_runtime_cls.py']
model = dict(backbone=dict(arch='videomamba_base'), head=dict(in_channels=768))
