from .hooks import CollectUnderWorkDirHook, InputCheckHook, ReductionInfoHook, TokenVisualizationHook
from .optim import VimLayerDecayOptimWrapperConstructor

__all__ = ['CollectUnderWorkDirHook', 'InputCheckHook', 'ReductionInfoHook', 'TokenVisualizationHook',
           'VimLayerDecayOptimWrapperConstructor']
