import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

# Without a GPU, Triton kernels (mtr_mm/ops/triton_scan.py) run on CPU tensors through Triton's interpreter,
# which is chosen when triton and each kernel are first imported: before any test can import them.
if not torch.cuda.is_available():
    os.environ.setdefault('TRITON_INTERPRET', '1')
