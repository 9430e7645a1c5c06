# Vim-S + UperNet, ADE20K 512x512, 160k iterations (Vim paper: 44.9 mIoU).
_base_ = ['./vim_tiny_upernet_ade20k_512.py']
model = dict(
    backbone=dict(arch='small', init_cfg=dict(checkpoint='checkpoints/vim_s_midclstok_80p5acc.pth')),
    neck=dict(in_channels=[384] * 4, out_channels=384),
    decode_head=dict(in_channels=[384] * 4, channels=384),
    auxiliary_head=dict(in_channels=384))
