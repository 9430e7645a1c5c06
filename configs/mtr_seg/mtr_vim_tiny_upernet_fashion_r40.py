# MTR at 40 % fewer backbone FLOPs on the Fashion scenes model (the layer set of
# _base_/reductions/mtr.py); the reducer x restoration grid is tools/benchmarks/eval_reduction_seg.py.
_base_ = ['../vim_seg/vim_tiny_upernet_fashion_512.py', '../_base_/reductions/mtr.py']
model = dict(backbone=dict(reduction={{_base_.reduction}}))
