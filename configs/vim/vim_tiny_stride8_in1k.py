# Vim-T fine-tuned with patch stride 8 (27x27 grid, 729 + 1 tokens, cls at index 364).
_base_ = './vim_tiny_in1k.py'
model = dict(backbone=dict(stride=8))
