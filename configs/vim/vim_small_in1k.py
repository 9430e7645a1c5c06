# Official Vim-S (checkpoint vim_s_midclstok_*.pth), ImageNet-1k val.
_base_ = ['../_base_/models/vim_cls.py', '../_base_/datasets/imagenet_val.py', '../_base_/default_runtime_cls.py']
model = dict(backbone=dict(arch='small'), head=dict(in_channels=384))
