# MTR on Vim-S: 40 % fewer FLOPs, training-free (schedule in _base_/reductions/mtr.py).
_base_ = ['../vim/vim_small_in1k.py', '../_base_/reductions/mtr.py']
model = dict(backbone=dict(reduction={{_base_.reduction}}))
