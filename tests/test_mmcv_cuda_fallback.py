"""mtr_mm.ops.mmcv_cuda_fallback: torchvision's nms / roi_align give what mmcv's own ops give (on
CPU tensors, where both run), forward and backward; the routing leaves CPU tensors to mmcv. Skipped
where torchvision's compiled ops do not load (this repository's CPU venv); run on the GPU machine
(docs/proxy_training.md, call 1) before the detector trains."""
import sys

import pytest
import torch

mmcv_ops = pytest.importorskip('mmcv.ops')
from mtr_mm.ops import mmcv_cuda_fallback as fallback  # noqa: E402

try:
    import torchvision.ops
    torchvision.ops.nms(torch.zeros(1, 4), torch.zeros(1), 0.5)
    TORCHVISION = True
except Exception:  # torchvision built for another torch: its operators are missing
    TORCHVISION = False
needs_torchvision = pytest.mark.skipif(not TORCHVISION, reason="torchvision's compiled ops do not load here")


def test_cpu_tensors_keep_mmcv_ops():
    assert fallback.install(force=True)
    ext = sys.modules['mmcv.ops.nms'].ext_module
    assert ext.nms.routed_to_torchvision and sys.modules['mmcv.ops.roi_align'].ext_module is ext
    boxes = torch.tensor([[0., 0., 10., 10.], [1., 1., 10., 10.], [20., 20., 30., 30.]])
    _, keep = mmcv_ops.nms(boxes, torch.tensor([0.9, 0.8, 0.7]), 0.5)
    assert keep.tolist() == [0, 2]


@needs_torchvision
@pytest.mark.parametrize('offset', [0, 1])
def test_nms_as_mmcv(offset):
    generator = torch.Generator().manual_seed(0)
    xy = torch.rand(300, 2, generator=generator) * 200
    boxes = torch.cat([xy, xy + 10 + torch.rand(300, 2, generator=generator) * 60], 1)
    scores = torch.rand(300, generator=generator)
    own = sys.modules['mmcv.ops.nms'].ext_module.nms
    assert torch.equal(fallback.tv_nms(boxes, scores, 0.5, offset), own(boxes, scores, iou_threshold=0.5, offset=offset))


@needs_torchvision
@pytest.mark.parametrize('sampling_ratio,aligned', [(0, True), (2, True), (0, False)])
def test_roi_align_as_mmcv(sampling_ratio, aligned):
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(2, 3, 32, 40, generator=generator, dtype=torch.float64)
    xy = torch.rand(20, 2, generator=generator, dtype=torch.float64) * 100
    rois = torch.cat([torch.randint(0, 2, (20, 1), generator=generator).double(), xy,
                      xy + 5 + torch.rand(20, 2, generator=generator, dtype=torch.float64) * 60], 1)
    args = dict(aligned_height=7, aligned_width=7, spatial_scale=0.25, sampling_ratio=sampling_ratio, pool_mode=1,
                aligned=aligned)
    ext = sys.modules['mmcv.ops.roi_align'].ext_module
    empty = features.new_zeros(0)
    own, ours = (features.new_zeros(20, 3, 7, 7) for _ in range(2))
    ext.roi_align_forward(features, rois, own, empty, empty, **args)
    fallback.tv_roi_align_forward(features, rois, ours, empty, empty, **args)
    torch.testing.assert_close(ours, own)
    grad = torch.randn(20, 3, 7, 7, generator=generator, dtype=torch.float64)
    own_grad, our_grad = (torch.zeros_like(features) for _ in range(2))
    ext.roi_align_backward(grad, rois, empty, empty, own_grad, **args)
    fallback.tv_roi_align_backward(grad, rois, empty, empty, our_grad, **args)
    torch.testing.assert_close(our_grad, own_grad)
