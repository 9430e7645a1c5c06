"""The pinned OpenMMLab stack works together on this CPU machine."""
import torch


def test_package_version():
    import mtr_mm
    assert isinstance(mtr_mm.__version__, str) and mtr_mm.__version__.count('.') == 2


def test_registries_import():
    from mmdet.utils import register_all_modules as register_det
    from mmpretrain.utils import register_all_modules as register_cls
    from mmseg.utils import register_all_modules as register_seg
    for register in (register_cls, register_det, register_seg):
        register(init_default_scope=False)
    import mtr_mm.models  # noqa: F401
    from mmengine.registry import MODELS
    from mmseg.registry import MODELS as SEG_MODELS
    assert MODELS.get('VimBackbone') is SEG_MODELS.get('VimBackbone') is not None


def test_torchvision_imports_beside_cpu_torch():
    import mtr_mm  # noqa: F401  (defines the schemas torchvision's CUDA build expects)
    import torchvision
    assert torchvision.__version__.startswith('0.28')


def test_mmcv_compiled_op_runs_on_cpu():
    from mmcv.ops import nms
    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], dtype=torch.float32)
    scores = torch.tensor([0.9, 0.8, 0.7])
    _, keep = nms(boxes, scores, iou_threshold=0.5)
    assert keep.tolist() == [0, 2]


def test_mmengine_checkpoint_loads_with_weights_only(tmp_path):
    """torch>=2.6 loads weights_only by default; mmengine's message hub state must be allow-listed."""
    import numpy as np
    from mmengine.logging import HistoryBuffer
    import mtr_mm  # noqa: F401
    path = tmp_path / 'ckpt.pth'
    loss = HistoryBuffer()
    loss.update(np.float64(0.5))
    torch.save({'meta': {'seed': np.int64(3), 'lr': np.float64(0.1)},
                'message_hub': {'log_scalars': {'loss': loss}},
                'state_dict': {'w': torch.zeros(2)}}, path)
    loaded = torch.load(path, weights_only=True)
    assert loaded['meta']['seed'] == 3
