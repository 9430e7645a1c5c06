# Vim-S with the recipe of vim_tiny_fashion_recipe.py: Vim-S's width and drop path.
_base_ = './vim_tiny_fashion_recipe.py'
drop_path_rate = 0.05
model = dict(backbone=dict(arch='small', drop_path_rate=drop_path_rate), head=dict(in_channels=384))
