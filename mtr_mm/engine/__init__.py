from .hooks import ReductionInfoHook, TokenVisualizationHook
from .optim import VimLayerDecayOptimWrapperConstructor

__all__ = ['ReductionInfoHook', 'TokenVisualizationHook', 'VimLayerDecayOptimWrapperConstructor']
