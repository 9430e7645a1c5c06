# Vim-S with the settings of vim_tiny_fashion_short.py (no Mixup / CutMix, RandAugment, erasing; lr 1e-3):
# Vim-S's width and drop path, and a schedule of 5 epochs (about 2.7 times Vim-T's compute an image:
# what one GPU session trains), or $PROXY_MAX_ITERS iterations.
_base_ = './vim_tiny_fashion_short.py'
iters_per_epoch = 214  # 55,000 // 256, as in the base
max_iters = {{'$PROXY_MAX_ITERS:1070'}}
model = dict(backbone=dict(arch='small', drop_path_rate=0.05), head=dict(in_channels=384))
warmup_iters = min(iters_per_epoch, max_iters // 5)
param_scheduler = [  # the base's, for this max_iters
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=warmup_iters),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=False, begin=warmup_iters, end=max_iters),
]
train_cfg = dict(max_iters=max_iters, val_interval=iters_per_epoch)
train_dataloader = dict(dataset=dict(num_samples=max_iters * 256))
