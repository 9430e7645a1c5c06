# Official Vim-B (checkpoint vim_b_midclstok_*.pth), ImageNet-1k val.
_base_ = ['../_base_/models/vim_cls.py', '../_base_/datasets/imagenet_val.py', '../_base_/default_runtime_cls.py']
model = dict(backbone=dict(arch='base'), head=dict(in_channels=768))
