from mmengine.registry import MODELS

from .backbone import VideoMambaBackbone, VimBackbone
from .vim import VIM_ARCH, BiMambaMixer, VimBlock, VisionMamba, vim_arch

# The root registry: mmpretrain, mmseg and mmdet registries fall back to it, so one class serves
# configs of all three libraries.
MODELS.register_module(module=VimBackbone, force=True)
MODELS.register_module(module=VideoMambaBackbone, force=True)  # mmaction2's Recognizer3D
__all__ = ['VisionMamba', 'VimBlock', 'BiMambaMixer', 'VimBackbone', 'VideoMambaBackbone', 'VIM_ARCH', 'vim_arch']

try:  # the detection neck is built from mmcv layers; bare GPU benchmark machines have no mmcv
    from .simple_fpn import LayerNorm2d, SimpleFeaturePyramid
except ModuleNotFoundError as error:
    if error.name != 'mmcv':
        raise
else:
    # 'LN2d' is the norm of the detection neck and heads (mmcv only has the channels-last 'LN').
    MODELS.register_module(module=SimpleFeaturePyramid, force=True)
    MODELS.register_module(name='LN2d', module=LayerNorm2d, force=True)
    __all__ += ['SimpleFeaturePyramid', 'LayerNorm2d']
