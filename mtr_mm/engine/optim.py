"""Layer-wise learning-rate decay for fine-tuning Vim in dense models (BEiT / ViTDet practice),
keyed on Vim's own parameter names (``layers.{i}``), wherever the backbone sits in the model."""
from typing import List

from mmengine.logging import print_log
from mmengine.optim import DefaultOptimWrapperConstructor
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS
from torch import nn

from ..models.vim import VisionMamba

# Vim parameters that never get weight decay besides 1-D ones (norms, biases, D, D_b): the position
# embedding, the class token and the SSM state matrices (Mamba marks A_log and D as no-decay).
NO_DECAY_NAMES = ('pos_embed', 'cls_token', 'A_log', 'A_b_log')


def vim_layer_id(name: str, num_layers: int) -> int:
    """Layer id of a parameter named relative to the VisionMamba module: the stem (patch embed,
    position embedding, class token) is 0, ``layers.{i}`` is i + 1, anything else (final norm)
    num_layers + 1."""
    if name.startswith(('patch_embed.', 'pos_embed', 'cls_token')):
        return 0
    if name.startswith('layers.'):
        return int(name.split('.')[1]) + 1
    return num_layers + 1


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class VimLayerDecayOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """``paramwise_cfg=dict(decay_rate=0.92, num_layers=24)``: a parameter of layer id k (see
    :func:`vim_layer_id`) gets ``lr * decay_rate ** (num_layers + 1 - k)``. The backbone is the
    model's VisionMamba module; everything outside it (necks, heads) gets the full lr.
    ``num_layers`` defaults to the backbone's depth (giving another one is an error).
    No weight decay for 1-D parameters (norms, biases) and :data:`NO_DECAY_NAMES`; the other
    groups take the optimizer's weight_decay."""

    def add_params(self, params: List[dict], module: nn.Module, **kwargs) -> None:
        found = [(f'{name}.', m) for name, m in module.named_modules() if isinstance(m, VisionMamba)]
        if len(found) != 1:
            raise ValueError(f'{type(self).__name__} needs exactly one VisionMamba in the model, found {len(found)}')
        vim_prefix, vim = found[0]
        num_layers = self.paramwise_cfg.get('num_layers', vim.depth)
        if num_layers != vim.depth:
            raise ValueError(f'paramwise_cfg.num_layers={num_layers} but the Vim backbone has depth {vim.depth}')
        decay_rate = self.paramwise_cfg['decay_rate']
        groups = {}
        for name, param in module.named_parameters():
            layer_id, no_decay = num_layers + 1, param.ndim == 1
            if name.startswith(vim_prefix):
                vim_name = name[len(vim_prefix):]
                layer_id = vim_layer_id(vim_name, num_layers)
                no_decay = no_decay or vim_name.split('.')[-1] in NO_DECAY_NAMES
            if (layer_id, no_decay) not in groups:
                group = dict(params=[], lr=self.base_lr * decay_rate**(num_layers + 1 - layer_id))
                if no_decay:
                    group['weight_decay'] = 0.
                groups[layer_id, no_decay] = group
            groups[layer_id, no_decay]['params'].append(param)
        params.extend(groups[key] for key in sorted(groups))
        print_log(f'layer-wise lr decay {decay_rate} over {num_layers} Vim layers: {len(groups)} parameter groups',
                  logger='current')
