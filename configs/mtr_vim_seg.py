# Semantic segmentation with MTR: Vim-T + UperNet on ADE20K at 40 % fewer backbone FLOPs. Pick
# another size/ratio from configs/mtr_seg/, the restoration of removed tokens with
# --cfg-options model.backbone.reduction.restore=stale (unmerge, stale, zero, similarity).
_base_ = './mtr_seg/mtr_vim_tiny_upernet_ade20k_r40.py'
