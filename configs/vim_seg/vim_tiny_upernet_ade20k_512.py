# Vim-T + UperNet, ADE20K 512x512, 160k iterations (Vim paper: 41.0 mIoU). Fine-tune from the
# classification checkpoint with model.backbone.init_cfg.checkpoint=vim_t_midclstok_76p1acc.pth.
_base_ = ['../_base_/models/vim_upernet.py', '../_base_/datasets/ade20k.py',
          '../_base_/schedules/schedule_160k.py', '../_base_/default_runtime_seg.py']
model = dict(backbone=dict(init_cfg=dict(type='Pretrained', checkpoint='checkpoints/vim_t_midclstok_76p1acc.pth')))
