#!/usr/bin/env bash
# Prepare a bare GPU machine that reaches no package index for this repository's benchmarks.
# Ship beside the code (git-ignored .gpu/, see docs/benchmarks.md):
#   .gpu/wheels/        pure-Python wheels of mmengine 0.10.7 and its dependencies (pip download)
#   .gpu/*.tar.gz       mamba-ssm / causal-conv1d sdists (../shared/gpu/fetch_sdists.py)
#   .gpu/build_mamba_ssm.sh
# then start GPU commands with:  bash tools/benchmarks/gpu_setup.sh && python3 tools/benchmarks/...
set -euo pipefail
cd "$(dirname "$0")/../.."
python3 -c 'import mmengine' 2>/dev/null || python3 -m pip install -q --no-index --no-deps .gpu/wheels/*.whl  # opencv: the machine's own
bash .gpu/build_mamba_ssm.sh
python3 -c 'from mtr_mm.ops import cuda_kernels_available as ok; assert ok(), "mamba-ssm kernels missing"; print("kernels ready")'
