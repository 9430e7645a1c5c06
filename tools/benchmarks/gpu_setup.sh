#!/usr/bin/env bash
# Prepare a bare GPU machine that reaches no package index for this repository's benchmarks.
# Ship beside the code (git-ignored .gpu/, see docs/benchmarks.md):
#   .gpu/wheels/        pure-Python wheels of mmengine 0.10.7 and its dependencies (pip download)
#   .gpu/*.tar.gz       mamba-ssm / causal-conv1d sdists (../shared/gpu/fetch_sdists.py)
#   .gpu/build_mamba_ssm.sh
#   .gpu/causal_conv1d-*-sm90-*.tar.xz + SHA256SUMS   optional prebuilt causal-conv1d (../shared/gpu/prebuilt/)
#   .gpu/mmseg/         only for the segmentation benchmark: the mmcv 2.1.0 sdist and cp312 wheels of
#                       mmsegmentation 1.2.2, prettytable, wcwidth, ftfy and setuptools<82 (mmcv's
#                       setup.py needs pkg_resources); matplotlib, regex, ninja: the machine's own
# then start GPU commands with:  bash tools/benchmarks/gpu_setup.sh && python3 tools/benchmarks/...
# With WITH_MMSEG=1 it also installs the mmseg stack, building mmcv with its CPU ops while the
# mamba-ssm kernels compile (mmseg imports mmcv.ops; UperNet itself needs no mmcv kernel).
set -euo pipefail
cd "$(dirname "$0")/../.."
python3 -c 'import mmengine' 2>/dev/null || python3 -m pip install -q --no-index --no-deps .gpu/wheels/*.whl  # opencv: the machine's own

install_mmseg_stack() {
  # Install only what the machine lacks: its own numpy / scipy / opencv stay.
  python3 - <<'PY'
import glob, importlib.util, subprocess, sys
wheels = {'mmseg': 'mmsegmentation', 'prettytable': 'prettytable', 'wcwidth': 'wcwidth', 'ftfy': 'ftfy',
          'pkg_resources': 'setuptools'}
# the detection proxy ships no mmseg wheels (tree size): then only mmcv is built
missing = [found[0] for module, wheel in wheels.items()
           if importlib.util.find_spec(module) is None and (found := glob.glob(f'.gpu/mmseg/{wheel}-*.whl'))]
if missing:
    subprocess.run([sys.executable, '-m', 'pip', 'install', '-q', '--no-index', '--no-deps', *missing], check=True)
PY
  python3 -c 'import mmcv.ops' 2>/dev/null && return
  local build=/tmp/mmcv_build
  mkdir -p $build && tar xzf .gpu/mmseg/mmcv-2.1.0.tar.gz -C $build
  # CPU ops only: with a GPU visible mmcv compiles its CUDA ops too (many minutes).
  (cd $build/mmcv-2.1.0 && CUDA_VISIBLE_DEVICES= MMCV_WITH_OPS=1 FORCE_CUDA=0 MAX_JOBS=8 CFLAGS=-g0 \
    python3 -m pip install -q --no-deps --no-build-isolation --no-index .)
  python3 -c 'import importlib.util, mmcv.ops; print("mmcv", mmcv.__version__, "with ops, mmseg",
    __import__("mmseg").__version__ if importlib.util.find_spec("mmseg") else "not shipped")'
}

if [ "${WITH_MMSEG:-0}" = 1 ]; then
  install_mmseg_stack > /tmp/mmseg_setup.log 2>&1 &
  mmseg_pid=$!
fi
# causal-conv1d too: without it the depthwise conv falls back to PyTorch's and the timings are not
# the official model's (~6 min to compile; a prebuilt archive in .gpu/ skips that, see build_mamba_ssm.sh)
WITH_CAUSAL_CONV1D=${WITH_CAUSAL_CONV1D:-1} bash .gpu/build_mamba_ssm.sh
python3 - <<'PY'
from mtr_mm.ops.backend import causal_conv1d_forward_kernel, cuda_kernels_available
assert cuda_kernels_available(), 'mamba-ssm kernels missing'
print('kernels ready: selective scan, causal-conv1d' if causal_conv1d_forward_kernel() else
      'kernels ready: selective scan only (causal-conv1d not built: WITH_CAUSAL_CONV1D=0)')
PY
if [ "${WITH_MMSEG:-0}" = 1 ]; then
  wait $mmseg_pid || { tail -40 /tmp/mmseg_setup.log; exit 1; }
  tail -1 /tmp/mmseg_setup.log
fi
