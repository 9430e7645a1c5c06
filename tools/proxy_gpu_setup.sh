#!/usr/bin/env bash
# Prepare a bare GPU machine for proxy training (configs/proxy/, docs/proxy_training.md): what
# tools/benchmarks/gpu_setup.sh installs (mmengine, mamba-ssm kernels) plus, by PROXY_TASK:
#   cls (default)  mmpretrain 1.2.0 and mmcv 2.1.0 built without ops (mmpretrain's transforms need
#                  mmcv's Python part only)
#   seg            mmseg 1.2.2 and mmcv 2.1.0 built with its CPU ops (mmseg imports mmcv.ops; UperNet
#                  needs no mmcv kernel), through gpu_setup.sh's WITH_MMSEG=1
#   det            mmdet 3.3.0 and the same mmcv with CPU ops: NMS and RoIAlign of CUDA tensors run
#                  torchvision's kernels (mtr_mm/ops/mmcv_cuda_fallback.py; mmcv's CUDA ops would take
#                  longer to compile than the session has)
# Ship in the git-ignored .gpu/ (docs/proxy_training.md lists the sizes; the tree travels <= 64 MiB):
#   .gpu/wheels/ .gpu/*.tar.gz .gpu/build_mamba_ssm.sh     as for tools/benchmarks/gpu_setup.sh
#   .gpu/mmseg/mmcv-2.1.0.tar.gz .gpu/mmseg/setuptools-*.whl
#   .gpu/fashion/  python tools/data/make_fashion_scenes.py --pack .gpu/fashion
#   cls: .gpu/proxy/  mmpretrain-1.2.0, mat4py, model_index, ordered_set, importlib_metadata-8.7.0 wheels
#        (the image lacks importlib_metadata, which mmpretrain imports; 10.x needs lazy_importer too)
#   seg: .gpu/mmseg/  mmsegmentation-1.2.2, prettytable, wcwidth, ftfy wheels
#   det: .gpu/mmdet/  mmdet-3.3.0, pycocotools, shapely, terminaltables wheels (cp312)
# Then: PROXY_TASK=... bash tools/proxy_gpu_setup.sh && python3 tools/train.py configs/proxy/... (see the doc)
set -euo pipefail
cd "$(dirname "$0")/.."
task=${PROXY_TASK:-cls}
case $task in
  cls) WITH_MMSEG=0 ;;
  seg|det) WITH_MMSEG=1 ;;
  *) echo "PROXY_TASK=$task: give cls, seg or det"; exit 1 ;;
esac
WITH_MMSEG=$WITH_MMSEG WITH_CAUSAL_CONV1D=${WITH_CAUSAL_CONV1D:-0} bash tools/benchmarks/gpu_setup.sh
python3 -c 'import pkg_resources' 2>/dev/null || python3 -m pip install -q --no-index --no-deps .gpu/mmseg/setuptools-*.whl
if [ "$task" = cls ]; then
  python3 -c 'import mmpretrain' 2>/dev/null || python3 -m pip install -q --no-index --no-deps .gpu/proxy/*.whl
  if ! python3 -c 'import mmcv.transforms' 2>/dev/null; then
    build=/tmp/mmcv_lite_build
    mkdir -p $build && tar xzf .gpu/mmseg/mmcv-2.1.0.tar.gz -C $build
    (cd $build/mmcv-2.1.0 && MMCV_WITH_OPS=0 python3 -m pip install -q --no-deps --no-build-isolation --no-index .)
  fi
  python3 -c 'import mmcv, mmpretrain; print("mmcv", mmcv.__version__, "(no ops), mmpretrain", mmpretrain.__version__)'
elif [ "$task" = det ]; then
  python3 -c 'import mmdet' 2>/dev/null || python3 -m pip install -q --no-index --no-deps .gpu/mmdet/*.whl
  python3 -c 'import mmcv, mmdet; from mtr_mm.ops import mmcv_cuda_fallback as f; import torch
print("mmcv", mmcv.__version__, "CUDA ops" if f.mmcv_has_cuda_ops() else "CPU ops; CUDA nms / roi_align via torchvision",
      "(routed)" if f.install() and not f.mmcv_has_cuda_ops() else "", "mmdet", mmdet.__version__)'
fi
test -f .gpu/fashion/train-images-idx3-ubyte.gz || { echo 'missing .gpu/fashion (make_fashion_scenes.py --pack)'; exit 1; }
