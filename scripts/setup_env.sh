#!/usr/bin/env bash
# Create (or refresh) the project's virtual environment in .venv and install the pinned stack.
# mmcv 2.1.0 exists on PyPI only as an sdist; its C++ ops take ~6 min to compile on 2 cores, so the
# built wheel is cached outside the repository, keyed on the torch version and python tag
# (pip's own cache keys on the sdist only and would hand back a wheel built against another torch).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${MTR_VENV:-.venv}
TORCH_VERSION=2.13.0
MMCV_VERSION=2.1.0

# Fashion-MNIST (Debian's dataset-fashion-mnist: /usr/share/datasets/fashion-mnist) is the real image
# data of tools/data/make_fashion_scenes.py and tests/test_fashion_data.py (which skip without it).
FASHION_DIR=/usr/share/datasets/fashion-mnist
if [ ! -d "$FASHION_DIR" ] && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  echo "[setup] installing dataset-fashion-mnist (apt) into $FASHION_DIR"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null
fi

[ -x "$VENV/bin/python" ] || python3.11 -m venv "$VENV"
PY="$VENV/bin/python"
PIP="$PY -m pip --disable-pip-version-check -q"

$PIP install "torch==$TORCH_VERSION" "setuptools>=77.0.3,<82" "numpy>=2,<2.4" wheel

PYTAG=$($PY -c 'import sys; print(f"cp{sys.version_info.major}{sys.version_info.minor}")')
WHEEL_DIR=${MTR_WHEEL_CACHE:-$HOME/.cache/mtr_mm/wheels}/torch$TORCH_VERSION-$PYTAG
if ! ls "$WHEEL_DIR"/mmcv-$MMCV_VERSION-$PYTAG-$PYTAG-linux_*.whl >/dev/null 2>&1; then
  echo "[setup] building mmcv $MMCV_VERSION with C++ ops (CPU only, ~6 min on 2 cores) into $WHEEL_DIR"
  mkdir -p "$WHEEL_DIR"
  # No build isolation: mmcv's setup.py must see the installed torch. FORCE_CUDA=0 and an unset
  # CUDA_HOME keep it from compiling CUDA kernels even though nvcc exists on this machine;
  # CFLAGS=-g0 drops debug info (32 MB -> 2 MB wheel, 2.5x faster build).
  (unset CUDA_HOME; MMCV_WITH_OPS=1 FORCE_CUDA=0 MAX_JOBS=${MAX_JOBS:-2} CFLAGS=-g0 CXXFLAGS=-g0 \
    $PIP wheel --no-deps --no-build-isolation --no-cache-dir -w "$WHEEL_DIR.tmp" "mmcv==$MMCV_VERSION")
  # A wheel tagged py2.py3-none-any has no compiled ops: refuse it rather than cache it.
  ls "$WHEEL_DIR.tmp"/mmcv-$MMCV_VERSION-$PYTAG-$PYTAG-linux_*.whl >/dev/null \
    || { echo "[setup] mmcv built without C++ ops: $(ls "$WHEEL_DIR.tmp")" >&2; exit 1; }
  mv "$WHEEL_DIR.tmp"/*.whl "$WHEEL_DIR"/ && rmdir "$WHEEL_DIR.tmp"
fi

$PIP install --find-links "$WHEEL_DIR" -r requirements/runtime.txt -r requirements/tests.txt
# mmaction2 1.2.0 (video models) has two packaging problems, worked around here:
# 1. it declares opencv-contrib-python, a second distribution of the cv2 module that would overwrite
#    opencv-python's files: it is installed with --no-deps, and the dependencies it really imports are
#    in runtime.txt (decord, einops, and importlib_metadata, which it imports without declaring).
# 2. its wheel and its sdist lack mmaction/models/localizers/drn/ (the folder has no __init__.py in the
#    source tree, so setuptools skips it: open-mmlab/mmaction2#2714), yet localizers/__init__.py imports
#    DRN from it, so `import mmaction.models` fails. DRN (temporal grounding) is not used here: its
#    import is removed from the installed localizers/__init__.py (a no-op once done or once fixed
#    upstream), and the check below imports mmaction.models.
$PIP install --no-deps -r requirements/mmaction.txt
$PY - <<'EOF'
import importlib.util, os
init = os.path.join(importlib.util.find_spec('mmaction').submodule_search_locations[0], 'models', 'localizers', '__init__.py')
if not os.path.isdir(os.path.join(os.path.dirname(init), 'drn')):
    text = open(init).read()
    patched = text.replace('from .drn.drn import DRN\n', '').replace(", 'DRN']", ']')
    if patched != text:
        open(init, 'w').write(patched)
        print('[setup] mmaction2: removed the import of DRN, missing from its wheel, from', init)
EOF
$PIP install --no-deps --no-build-isolation -e .
$PY -c "import mtr_mm, mmcv.ops, mmaction.models; print('[setup] ready: mtr_mm', mtr_mm.__version__, 'mmcv', mmcv.__version__)"
