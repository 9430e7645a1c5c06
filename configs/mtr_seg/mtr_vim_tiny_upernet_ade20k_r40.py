# MTR on Vim-T + UperNet (ADE20K): 40 % fewer backbone FLOPs, training-free;
# layer set and restoration mode in _base_/reductions/mtr_dense.py.
_base_ = ['../vim_seg/vim_tiny_upernet_ade20k_512.py', '../_base_/reductions/mtr_dense.py']
model = dict(backbone=dict(reduction={{_base_.reduction}}))
