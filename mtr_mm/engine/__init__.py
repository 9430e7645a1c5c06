from .hooks import ReductionInfoHook
from .optim import VimLayerDecayOptimWrapperConstructor

__all__ = ['ReductionInfoHook', 'VimLayerDecayOptimWrapperConstructor']
