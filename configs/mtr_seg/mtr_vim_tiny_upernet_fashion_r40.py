# MTR at 40 % fewer backbone FLOPs on the Fashion scenes model (the layer set of
# _base_/reductions/mtr_dense.py); every reducer and restoration mode: tools/analysis/compare_reductions.py.
_base_ = ['../vim_seg/vim_tiny_upernet_fashion_512.py', '../_base_/reductions/mtr_dense.py']
model = dict(backbone=dict(reduction={{_base_.reduction}}))
