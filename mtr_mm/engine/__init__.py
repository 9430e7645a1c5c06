from .hooks import (CollectUnderWorkDirHook, InputCheckHook, MainProcessLoggerHook, ReductionInfoHook,
                    TokenVisualizationHook)
from .optim import VimLayerDecayOptimWrapperConstructor

__all__ = ['CollectUnderWorkDirHook', 'InputCheckHook', 'MainProcessLoggerHook', 'ReductionInfoHook',
           'TokenVisualizationHook', 'VimLayerDecayOptimWrapperConstructor']
