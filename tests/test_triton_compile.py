"""The Triton kernels compiled for the GPU we run on (sm_90), on a machine without one: the interpreter
tests (test_triton_scan.py) check their numbers, this checks that they compile to GPU code at all and
that the scan's code has the shape its design claims (no shuffles, barriers or shared memory: each
thread owns whole channels). Runs in a subprocess: conftest.py puts this process's Triton in
interpreter mode."""
import json
import os
import subprocess
import sys

import pytest

from script_runner import REPO

pytest.importorskip('triton')

COMPILE = r'''
import json

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from mtr_mm.ops import triton_scan


def compile_ptx(kernel, dtype, fp32_pointers, constexprs, num_warps):
    """PTX for sm_90; pointers in ``dtype`` (the activations) but the fp32 ones named."""
    signature = {name: 'constexpr' if name in constexprs else
                 ('*fp32' if name in fp32_pointers else f'*{dtype}') if name.endswith('_ptr') else 'i32'
                 for name in kernel.arg_names}
    source = ASTSource(fn=kernel, signature=signature, constexprs=constexprs)
    return triton.compile(source, target=GPUTarget('cuda', 90, 32), options=dict(num_warps=num_warps)).asm['ptx']


def shape(ptx):
    return dict(shfl=ptx.count('shfl.sync'), barriers=ptx.count('bar.sync'), shared=ptx.count('.shared'),
                stores=ptx.count('st.global'))


out = {}
for dtype, unroll in (('bf16', 2), ('fp32', 4)):  # DEFAULT_UNROLL by input bytes
    out[f'scan {dtype}'] = shape(compile_ptx(
        triton_scan._selective_scan_fwd_kernel, dtype, {'A_ptr', 'D_ptr', 'delta_bias_ptr'},
        dict(STATE=16, BLOCK_N=16, BLOCK_E=128, UNROLL=unroll, HAS_D=True, HAS_Z=True, HAS_DELTA_BIAS=True,
             DELTA_SOFTPLUS=True, WRITE_UNGATED=True), num_warps=4))
for name, activation in triton_scan.CHANNEL_MEAN_ACTIVATIONS.items():
    out[f'channel mean {name}'] = shape(compile_ptx(
        triton_scan._channel_mean_kernel, 'bf16', {'bias_ptr', 'out_ptr'},
        dict(ACTIVATION=activation, HAS_BIAS=True, BLOCK_E=32, BLOCK_L=64), num_warps=4))
print(json.dumps(out))
'''


def test_triton_kernels_compile_for_sm90():
    env = {k: v for k, v in os.environ.items() if k != 'TRITON_INTERPRET'}
    env['PYTHONPATH'] = str(REPO) + os.pathsep + env.get('PYTHONPATH', '')
    done = subprocess.run([sys.executable, '-c', COMPILE], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)
    if done.returncode and 'ptxas' in done.stderr and 'not found' in done.stderr:
        pytest.skip('this triton has no ptxas to compile GPU code with')
    assert done.returncode == 0, done.stderr[-3000:]
    shapes = json.loads(done.stdout.strip().splitlines()[-1])
    for dtype in ('bf16', 'fp32'):
        scan = shapes[f'scan {dtype}']
        assert scan['shfl'] == scan['barriers'] == scan['shared'] == 0 and scan['stores'] > 0, scan
    for name in ('none', 'softplus', 'relu'):
        assert shapes[f'channel mean {name}']['stores'] > 0  # compiled; its one channel reduction may synchronise
