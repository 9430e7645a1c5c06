"""CUDA tensors through mmcv's ``nms`` and ``roi_align`` when mmcv was built without its CUDA ops.

The GPU machine's mmcv is built from source with CPU ops only (``tools/proxy_gpu_setup.sh``):
compiling its ~100 CUDA kernels takes longer than a training session can spare. Cascade / Mask
R-CNN needs two of them on the GPU: NMS (RPN proposals, test-time boxes) and RoIAlign (RoI
features, mask targets in ``BitmapMasks.crop_and_resize``). ``install()`` routes CUDA tensors of
those two ops of ``mmcv._ext`` to torchvision's CUDA kernels (the same Detectron2 algorithms:
``aligned`` RoIAlign with adaptive sampling, greedy IoU NMS sorted by score); CPU tensors and
every other op keep mmcv's own code. Nothing changes where mmcv has CUDA ops.

Imported through a config's ``custom_imports`` (``configs/proxy/vim_tiny_maskrcnn_fashion_recipe.py``).
"""
import torch

MAX_POOL = 0  # mmcv's pool_mode code for 'max' ('avg' is 1)


def tv_nms(bboxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float, offset: int = 0) -> torch.Tensor:
    """``mmcv._ext.nms``: kept indices, by decreasing score. offset 1 (legacy pixel boxes) is
    torchvision's IoU of the boxes grown by one pixel."""
    from torchvision.ops import nms
    if offset:
        bboxes = bboxes + bboxes.new_tensor([0, 0, offset, offset])
    return nms(bboxes, scores, iou_threshold)


def tv_roi_align_forward(input, rois, output, argmax_y, argmax_x, aligned_height, aligned_width, spatial_scale,
                         sampling_ratio, pool_mode, aligned):
    """``mmcv._ext.roi_align_forward`` ('avg' pooling): fills ``output``."""
    from torchvision.ops import roi_align
    output.copy_(roi_align(input, rois.to(input.dtype), (aligned_height, aligned_width), spatial_scale,
                           sampling_ratio, aligned))


def tv_roi_align_backward(grad_output, rois, argmax_y, argmax_x, grad_input, aligned_height, aligned_width,
                          spatial_scale, sampling_ratio, pool_mode, aligned):
    """``mmcv._ext.roi_align_backward`` ('avg' pooling): fills ``grad_input``. RoIAlign is linear
    in its input, so its gradient is the vector-Jacobian product at any input (zeros here)."""
    from torchvision.ops import roi_align
    with torch.enable_grad():
        probe = grad_input.new_zeros(grad_input.shape, requires_grad=True)
        pooled = roi_align(probe, rois.to(probe.dtype), (aligned_height, aligned_width), spatial_scale,
                           sampling_ratio, aligned)
        grad_input.copy_(torch.autograd.grad(pooled, probe, grad_output)[0])


def _routed(own, fallback, name: str):
    def op(first, *args, **kwargs):
        if not first.is_cuda:
            return own(first, *args, **kwargs)
        if kwargs.get('pool_mode') == MAX_POOL:
            raise NotImplementedError(f'{name} with max pooling needs mmcv built with its CUDA ops')
        return fallback(first, *args, **kwargs)
    op.__name__ = op.__qualname__ = name
    op.routed_to_torchvision = True
    return op


def mmcv_has_cuda_ops() -> bool:
    from mmcv.ops import get_compiling_cuda_version
    return get_compiling_cuda_version() != 'not available'


def install(force: bool = False) -> bool:
    """Route CUDA tensors of mmcv's nms / roi_align to torchvision, if mmcv lacks CUDA ops (or
    ``force``: tests). Idempotent; returns whether the routing is in place."""
    from mmcv.utils import ext_loader
    ext = ext_loader.load_ext('_ext', ['nms', 'roi_align_forward', 'roi_align_backward'])
    if getattr(ext.nms, 'routed_to_torchvision', False):
        return True
    if not force and mmcv_has_cuda_ops():
        return False
    for name, fallback in (('nms', tv_nms), ('roi_align_forward', tv_roi_align_forward),
                           ('roi_align_backward', tv_roi_align_backward)):
        setattr(ext, name, _routed(getattr(ext, name), fallback, name))
    return True


# Only where a GPU is visible: CPU runs (tests, this machine) keep mmcv's ops untouched.
if torch.cuda.is_available():
    install()
