#!/usr/bin/env bash
# Prepare a bare GPU machine for proxy training (configs/proxy/, docs/proxy_training.md): what
# tools/benchmarks/gpu_setup.sh installs (mmengine, mamba-ssm kernels) plus mmpretrain 1.2.0 and
# mmcv 2.1.0 built without its ops (mmpretrain's transforms need mmcv's Python part only).
# Ship in the git-ignored .gpu/ (docs/proxy_training.md lists the sizes; the tree travels <= 64 MiB):
#   .gpu/wheels/ .gpu/*.tar.gz .gpu/build_mamba_ssm.sh     as for tools/benchmarks/gpu_setup.sh
#   .gpu/mmseg/mmcv-2.1.0.tar.gz .gpu/mmseg/setuptools-*.whl
#   .gpu/proxy/  mmpretrain-1.2.0, mat4py, model_index, ordered_set wheels
#   .gpu/fashion/  python tools/data/make_fashion_scenes.py --pack .gpu/fashion
# Then: bash tools/proxy_gpu_setup.sh && python3 tools/train.py configs/proxy/... (see the doc)
set -euo pipefail
cd "$(dirname "$0")/.."
WITH_CAUSAL_CONV1D=${WITH_CAUSAL_CONV1D:-0} bash tools/benchmarks/gpu_setup.sh
python3 -c 'import pkg_resources' 2>/dev/null || python3 -m pip install -q --no-index --no-deps .gpu/mmseg/setuptools-*.whl
python3 -m pip install -q --no-index --no-deps .gpu/proxy/*.whl
if ! python3 -c 'import mmcv.transforms' 2>/dev/null; then
  build=/tmp/mmcv_lite_build
  mkdir -p $build && tar xzf .gpu/mmseg/mmcv-2.1.0.tar.gz -C $build
  (cd $build/mmcv-2.1.0 && MMCV_WITH_OPS=0 python3 -m pip install -q --no-deps --no-build-isolation --no-index .)
fi
python3 -c 'import mmcv, mmpretrain; print("mmcv", mmcv.__version__, "(no ops), mmpretrain", mmpretrain.__version__)'
test -f .gpu/fashion/train-images-idx3-ubyte.gz || { echo 'missing .gpu/fashion (make_fashion_scenes.py --pack)'; exit 1; }
