# Vim-T + UperNet on the Fashion-MNIST-on-photos scenes (our benchmark, docs/benchmarks.md): the
# project's Vim-T UperNet, 11 classes, fine-tuned from the Fashion classification checkpoint of
# tools/benchmarks/train_fashion_cls.py (the Vim recipe: a dense model starts from classification).
#   python tools/data/make_fashion_scenes.py --out data/fashion_scenes --cls-train 0 --cls-test 0 \
#       --seg-train 4000 --seg 500 --det 0
#   python tools/train.py configs/vim_seg/vim_tiny_upernet_fashion_512.py --amp --cfg-options optim_wrapper.dtype=bfloat16
_base_ = ['../_base_/models/vim_upernet.py', '../_base_/datasets/fashion_scenes_seg.py',
          '../_base_/schedules/schedule_160k.py', '../_base_/default_runtime_seg.py']
num_classes = 11
model = dict(
    backbone=dict(init_cfg=dict(type='Pretrained', checkpoint='work_dirs/fashion_vim_t/vim_fashion.pth')),
    decode_head=dict(num_classes=num_classes),
    auxiliary_head=dict(num_classes=num_classes))
# A short fine-tune (minutes on one GPU, 16 scenes per iteration): the base optimizer (AdamW, layer
# decay 0.92) at twice its learning rate, 100 warm-up iterations, linear decay to 0.
max_iters = 1600
optim_wrapper = dict(optimizer=dict(lr=2e-4))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=100),
    dict(type='PolyLR', power=1.0, eta_min=0.0, by_epoch=False, begin=100, end=max_iters),
]
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
default_hooks = dict(checkpoint=dict(interval=400, max_keep_ckpts=1, save_last=True))
