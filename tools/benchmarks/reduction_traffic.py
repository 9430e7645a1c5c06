"""Kernels and bytes of one token-reduction step, per method: what a GPU pays for it, counted on any device.

    python tools/benchmarks/reduction_traffic.py                      # Vim-B width, batch 8, 197 tokens, -35
    python tools/benchmarks/reduction_traffic.py --batch 128 --dtypes bf16 --out-dir OUT

One ``TokenReduction.reduce`` step (plan + apply, the part ``bench_speed.py`` reports as the reduction's
overhead) runs under a dispatch mode that counts every ATen op that launches work (views excluded) and
the bytes it writes: the outputs of out-of-place ops, the written rows (the source argument) of in-place
ones (ops that only make views are not counted). On a GPU each counted op is (at least) one kernel launch, and a step that is bound by memory costs
about its bytes over the bandwidth. The state is random (hidden in ``--dtypes``, residual fp32, as in
the model); scores are random too, so every method plans a full step. Writes <out-dir>/traffic.{md,json,png}.
"""
import argparse
import json
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

import torch  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402

from mtr_mm.reduction import REDUCERS, TokenState  # noqa: E402
from mtr_mm.reduction.engine import TokenReduction  # noqa: E402
from tools.report_utils import pyplot, rebuild_report, save_figure  # noqa: E402

DTYPES = dict(fp32=torch.float32, bf16=torch.bfloat16)


def tensor_bytes(t) -> int:
    return t.numel() * t.element_size() if isinstance(t, torch.Tensor) else 0


def storages(values) -> set:
    return {v.untyped_storage().data_ptr() for v in values if isinstance(v, torch.Tensor)}


class CountWrites(TorchDispatchMode):
    """Counts the ops that launch work and the bytes they write. An op whose output shares memory
    with an input (a view, a reshape or dtype conversion that changes nothing) launches nothing."""

    def __init__(self):
        super().__init__()
        self.ops, self.bytes = 0, 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        outputs = list(out) if isinstance(out, (tuple, list)) else [out]
        if func.overloadpacket.__name__.endswith('_'):  # in place: it writes as much as its float operands
            self.ops += 1
            self.bytes += sum(tensor_bytes(a) for a in args[1:] if isinstance(a, torch.Tensor) and a.is_floating_point())
        elif not storages(outputs) & storages(list(args) + list((kwargs or {}).values())):
            self.ops += 1
            self.bytes += sum(tensor_bytes(o) for o in outputs)
        return out


def count_step(method: str, batch: int, length: int, channels: int, r: int, dtype: torch.dtype) -> dict:
    generator = torch.Generator().manual_seed(0)
    hidden = torch.randn(batch, length, channels, generator=generator).to(dtype)
    state = TokenState.create(hidden, length // 2, (14, 14) if length == 197 else (1, length - 1))
    state.residual = torch.randn(batch, length, channels, generator=generator)
    score = torch.rand(batch, length, generator=generator)
    reduction = TokenReduction(method=method, schedule=dict(layers=[0], r=r))
    with torch.inference_mode(), CountWrites() as counter:
        reduction.reduce(state, r, score)
    return dict(method=method, dtype=str(dtype).replace('torch.', ''), ops=counter.ops,
                mib_written=counter.bytes / 2 ** 20)


def write_report(results: dict, out_dir: str):
    os.makedirs(out_dir, exist_ok=True)
    with open(osp.join(out_dir, 'traffic.json'), 'w') as f:
        json.dump(results, f, indent=1)
    shape = results['shape']
    full = shape['batch'] * shape['length'] * shape['channels'] * 4 / 2 ** 20
    lines = [f"# One reduction step: ops and bytes written\n",
             f"batch {shape['batch']}, {shape['length']} tokens, {shape['channels']} channels, r = {shape['r']}; "
             f"one fp32 (B, L, C) tensor is {full:.1f} MiB.\n",
             '| method | hidden dtype | ops (kernels) | MiB written | in (B, L, C) fp32 tensors |', '|---|---|---|---|---|']
    lines += [f"| {row['method']} | {row['dtype']} | {row['ops']} | {row['mib_written']:.1f} | "
              f"{row['mib_written'] / full:.1f} |" for row in results['rows']]
    text = '\n'.join(lines) + '\n'
    print(text)
    with open(osp.join(out_dir, 'traffic.md'), 'w') as f:
        f.write(text)
    plt = pyplot()
    if plt is not None:
        fig, ax = plt.subplots(figsize=(7, 3.5))
        labels = [f"{row['method']}\n{row['dtype']}" for row in results['rows']]
        ax.bar(labels, [row['mib_written'] / full for row in results['rows']])
        ax.set_ylabel('bytes written / one (B, L, C) fp32 tensor')
        ax.set_title('one reduction step')
        save_figure(fig, osp.join(out_dir, 'traffic.png'))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--methods', nargs='+', default=sorted(REDUCERS.module_dict), choices=sorted(REDUCERS.module_dict))
    parser.add_argument('--dtypes', nargs='+', default=['fp32', 'bf16'], choices=list(DTYPES))
    parser.add_argument('--batch', type=int, default=8)
    parser.add_argument('--length', type=int, default=197, help='tokens, class token included')
    parser.add_argument('--channels', type=int, default=768, help='embedding width (Vim-B: 768)')
    parser.add_argument('--r', type=int, default=35, help='tokens removed by the step')
    parser.add_argument('--out-dir', default='work_dirs/reduction_traffic')
    parser.add_argument('--report-only', help='rebuild the report from this results json')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if rebuild_report(args, write_report):
        return
    shape = dict(batch=args.batch, length=args.length, channels=args.channels, r=args.r)
    rows = [count_step(method, **shape, dtype=DTYPES[dtype]) for method in args.methods for dtype in args.dtypes]
    write_report(dict(shape=shape, rows=rows), args.out_dir)


if __name__ == '__main__':
    main()
