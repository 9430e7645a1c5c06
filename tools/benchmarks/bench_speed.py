"""Throughput and latency of Vim / VideoMamba with and without token reduction, beside the official forward.

    # the claim a user can check on their own GPU: the official hustvl/Vim forward (imported from a
    # checkout of github.com/hustvl/Vim, never copied) and ours on the same weights, logits compared
    # first, then every run timed in the same interleaved rounds
    python tools/benchmarks/bench_speed.py --official ~/src/Vim --batch 128 --out-dir OUT
    # batch-1 latency, CUDA-graph replay beside eager
    python tools/benchmarks/bench_speed.py --official ~/src/Vim --batch 1 --runs official,none,none+graph,mtr@0.4+graph
    # the dense backbone of the segmentation models at 512x512, each restoration mode
    python tools/benchmarks/bench_speed.py --dense 512 --runs none,mtr@0.4/unmerge,mtr@0.4/stale,mtr@0.4/similarity
    # the whole segmentation model of a config (backbone + neck + decode head, mmseg's tensor mode)
    python tools/benchmarks/bench_speed.py --dense 512 --config configs/vim_seg/vim_tiny_upernet_ade20k_512.py
    # CPU path, Vim-T at batch 8
    python tools/benchmarks/bench_speed.py --device cpu --archs tiny --batch 8 --dtypes fp32 --runs none,mtr@0.4
    # VideoMamba video models (8- and 16-frame views, 1 + 196 T tokens), unreduced vs MTR at -40 %
    python tools/benchmarks/bench_speed.py --archs videomamba_tiny videomamba_small --frames 8 16 --batch 16 \
        --runs none,mtr@0.4 --out-dir OUT
    # rebuild the markdown + plot from a results file
    python tools/benchmarks/bench_speed.py --report-only OUT/speed.json --out-dir docs/benchmarks

A run is ``official``, ``none`` (ours, unreduced) or ``METHOD@FLOPS_REDUCTION``, with ``/RESTORE`` (dense
models) and ``+graph`` (replay as CUDA graphs: ``cuda_graph=True``) as suffixes. Timing: warm-up, then
every run measured in turn, the order rotated each round, on inputs rotated between calls; CUDA events
on GPU; medians, and the per-round spread ((max - min) / median of the rounds' images/s). The
reduction's own overhead is the time of its plan + apply steps, replayed in isolation on the states the
forward produced, as a share of the reduced forward: their GPU work (replayed as one CUDA graph) and,
beside it, their eager time from Python (host launch cost included: what a host-bound forward pays). Random weights (speed does not depend on them);
with ``--official`` both models hold the official model's initial weights. ``--archs`` takes any size of
``mtr_mm.models.VIM_ARCH`` (Vim ``tiny``..., VideoMamba ``videomamba_tiny``...); ``--frames`` makes the
VideoMamba sizes video models (one row set per frame count; "images/s" then counts clips of that many
frames), Vim sizes stay image models.
"""
import argparse
import json
import os
import os.path as osp
import statistics
import sys
import types
from functools import partial

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

import torch  # noqa: E402

from mmengine.model import revert_sync_batchnorm  # noqa: E402

from mtr_mm.apis import init_model, load_config  # noqa: E402
from mtr_mm.models import VIM_ARCH, VimBackbone, VisionMamba, vim_arch  # noqa: E402
from mtr_mm.ops import cuda_kernels_available, set_ops_backend, set_scan_kernel  # noqa: E402
from mtr_mm.ops.backend import SCAN_KERNELS  # noqa: E402
from mtr_mm.reduction import apply_plan  # noqa: E402
from tools.report_utils import pyplot, rebuild_report, save_figure, shipped_layers  # noqa: E402
from tools.timing import BUSY_SPREAD, MIN_ROUNDS, cuda_graph_seconds, interleaved_rounds, spread, wall_seconds  # noqa: E402

DTYPES = {'fp32': None, 'bf16': torch.bfloat16}
DENSE_OUT_INDICES = (5, 11, 17, 23)  # the UperNet configs' (configs/_base_/models/vim_upernet.py)
OFFICIAL_FACTORY = {
    'tiny': 'vim_tiny_patch16_224_bimambav2_final_pool_mean_abs_pos_embed_with_midclstok_div2',
    'small': 'vim_small_patch16_224_bimambav2_final_pool_mean_abs_pos_embed_with_midclstok_div2',
    'base': 'vim_base_patch16_224_bimambav2_final_pool_mean_abs_pos_embed_with_middle_cls_token_div2',
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--archs', nargs='+', default=['tiny', 'small', 'base'], choices=list(VIM_ARCH))
    parser.add_argument('--frames', nargs='+', type=int, default=[],
                        help='video: time the VideoMamba archs as video models at each of these frame counts')
    parser.add_argument('--batch', type=int, default=128)
    parser.add_argument('--dtypes', nargs='+', default=['fp32', 'bf16'], choices=list(DTYPES))
    parser.add_argument('--runs', default=None, help='comma list (see above); default: official (with --official), '
                        'none, MTR at 20/30/40 %% and every other method at 40 %%')
    parser.add_argument('--layers', nargs='+', type=int,
                        help='reducing layers, the same for every method (default: the shipped MTR configs of the '
                             'task: classification, or with --dense segmentation / detection)')
    parser.add_argument('--official', metavar='PATH', help='a checkout of github.com/hustvl/Vim: time its forward too')
    parser.add_argument('--dense', type=int, metavar='SIZE', help='time the dense (segmentation) backbone at SIZE x SIZE')
    parser.add_argument('--config', help='with --dense: time the whole model of this dense config (backbone + neck + '
                        'decode head, the tensor forward of mmseg/mmdet); its arch replaces --archs')
    parser.add_argument('--rounds', type=int, default=MIN_ROUNDS, help='interleaved timing rounds')
    parser.add_argument('--iters', type=int, default=10, help='forwards per timing')
    parser.add_argument('--warmup', type=int, default=3, help='forwards per run before timing (graph capture included)')
    parser.add_argument('--ops', default='auto', choices=['auto', 'torch', 'cuda'],
                        help='ops backend (auto: CUDA kernels when importable)')
    parser.add_argument('--scan-kernel', default='auto', choices=SCAN_KERNELS,
                        help="inference scan kernel of the 'cuda' ops (mtr_mm.ops.set_scan_kernel)")
    parser.add_argument('--check-backends', action='store_true', help='CUDA kernels vs PyTorch ops, same weights')
    parser.add_argument('--out-dir', default='work_dirs/bench_speed')
    parser.add_argument('--report-only', help='rebuild the report from this results json')
    args = parser.parse_args(argv)
    if args.layers is None:
        args.layers = shipped_layers(dense=bool(args.dense))
    if args.runs is None:
        evit = '' if args.dense else 'evit@0.4,'  # EViT needs a class token: dense backbones have none
        args.runs = ('official,' if args.official else '') + f'none,mtr@0.2,mtr@0.3,mtr@0.4,random@0.4,{evit}' \
            'tome@0.4,pumer@0.4,utr@0.4,hsa@0.4'
    if args.dense and (args.official or 'official' in args.runs.split(',')):
        parser.error('--dense times our dense backbone; the official code has no such forward to compare')
    if args.config and not args.dense:
        parser.error('--config times a dense model: give its input size with --dense SIZE (e.g. --dense 512)')
    if 'official' in args.runs.split(',') and not args.official:
        parser.error("run 'official' needs --official PATH (a checkout of github.com/hustvl/Vim)")
    if args.official and any(a not in OFFICIAL_FACTORY for a in args.archs):
        parser.error(f'--official: the hustvl/Vim checkout has the sizes {sorted(OFFICIAL_FACTORY)} only')
    if args.frames and (args.dense or not any(is_video_arch(a) for a in args.archs)):
        parser.error('--frames times VideoMamba video models: give videomamba_* archs (and no --dense)')
    return args


def is_video_arch(arch: str) -> bool:
    return arch.startswith('videomamba_')


def arch_variants(args):
    """(arch, frames) pairs to time: VideoMamba archs once per --frames value, the rest as images (0)."""
    return [(arch, frames) for arch in args.archs
            for frames in (args.frames if args.frames and is_video_arch(arch) else [0])]


def make_inputs(batch, frames, size, device, count=3):
    """``count`` random batches: images (B, 3, S, S) or clips (B, 3, T, S, S)."""
    generator = torch.Generator(device).manual_seed(0)
    shape = (batch, 3) + ((frames, ) if frames else ()) + (size, size)
    return [torch.randn(shape, device=device, generator=generator) for _ in range(count)]


def parse_run(run: str) -> dict:
    """'mtr@0.4/stale+graph' -> method mtr, target 0.4, restore stale, graph True."""
    graph = run.endswith('+graph')
    body = run[:-len('+graph')] if graph else run
    body, _, restore = body.partition('/')
    method, _, target = body.partition('@')
    return dict(method=method, target=float(target) if target else 0., restore=restore or 'unmerge', graph=graph)


def build(arch, run, args, state_dict=None, frames=0):
    spec = parse_run(run)
    reduction = None
    if spec['method'] != 'none':
        reduction = dict(method=spec['method'], restore=spec['restore'],
                         schedule=dict(layers=list(args.layers), flops_reduction=spec['target']))
    torch.manual_seed(0)
    if args.config:
        model = init_model(args.config, cfg_options={
            'model.backbone.init_cfg': None, 'model.backbone.img_size': args.dense,
            'model.backbone.reduction': reduction, 'model.backbone.cuda_graph': spec['graph']})
        model = revert_sync_batchnorm(model)  # SyncBN needs a process group; one device here
        vim = model.backbone.vim
    elif args.dense:
        model = VimBackbone(arch=arch, img_size=args.dense, out_type='featmap', out_indices=DENSE_OUT_INDICES,
                            reduction=reduction, cuda_graph=spec['graph'])
        vim = model.vim
    else:
        model = vim = VisionMamba(reduction=reduction, cuda_graph=spec['graph'], num_frames=frames, **vim_arch(arch))
    if state_dict is not None:
        vim.load_state_dict(state_dict, strict=True)
    return model.to(args.device).eval(), vim


# ---------------------------------------------------------------- the official forward, from a checkout

class _CausalConvFwd:
    """causal-conv1d's compiled forward as the official fork (mamba-ssm 1.1.1) calls it: seven
    arguments, output returned. Releases from 1.4 on take a preallocated ``out`` before
    ``final_states_out`` and return nothing; the fork's call is adapted only then."""

    def __init__(self, ext):
        self.ext, self.takes_out = ext, None

    def causal_conv1d_fwd(self, x, weight, bias, seq_idx, initial_states, final_states_out, silu):
        if not self.takes_out:
            try:
                out = self.ext.causal_conv1d_fwd(x, weight, bias, seq_idx, initial_states, final_states_out, silu)
                self.takes_out = False
                return out
            except TypeError:
                if self.takes_out is False:
                    raise
                self.takes_out = True
        out = torch.empty_like(x)
        self.ext.causal_conv1d_fwd(x, weight, bias, seq_idx, initial_states, out, final_states_out, silu)
        return out


def import_official(path: str):
    """hustvl/Vim's ``vim/models_mamba.py`` with its forked mamba_ssm (``mamba-1p1p1/``), imported from
    the user's checkout. The fork leaves sys.modules afterwards, so our ops import the installed
    mamba-ssm; the official model keeps its own references."""
    vim_dir, fork_dir = osp.join(path, 'vim'), osp.join(path, 'mamba-1p1p1')
    if not (osp.isfile(osp.join(vim_dir, 'models_mamba.py')) and osp.isdir(osp.join(fork_dir, 'mamba_ssm'))):
        raise SystemExit(f'--official {path}: not a checkout of github.com/hustvl/Vim (needs vim/models_mamba.py and '
                         'mamba-1p1p1/mamba_ssm/); clone it and pass its root folder')
    if any(k == 'mamba_ssm' or k.startswith('mamba_ssm.') for k in sys.modules):
        raise SystemExit('--official: mamba_ssm was imported before the official fork; run this script fresh')
    # Language-model-only modules the vision model imports but never calls (their transformers
    # imports fail with transformers >= 5): empty stand-ins.
    for name, attrs in (('mamba_ssm.utils.generation', dict(GenerationMixin=type('GenerationMixin', (), {}))),
                        ('mamba_ssm.utils.hf', dict(load_config_hf=None, load_state_dict_hf=None))):
        sys.modules[name] = types.SimpleNamespace(**attrs)
    sys.path[:0] = [fork_dir, vim_dir]
    try:
        import models_mamba
    finally:
        del sys.path[:2]
    interface = sys.modules['mamba_ssm.ops.selective_scan_interface']
    if interface.causal_conv1d_cuda is None:
        raise SystemExit('--official: causal-conv1d is not importable; the official forward needs its kernel')
    interface.causal_conv1d_cuda = _CausalConvFwd(interface.causal_conv1d_cuda)
    for name in [k for k in sys.modules if k == 'mamba_ssm' or k.startswith('mamba_ssm.')]:
        del sys.modules[name]
    return models_mamba


def max_rel_diff(out, ref):
    return ((out.double() - ref.double()).abs().max() / ref.double().abs().max()).item()


def official_parity(official, ours, args):
    """Max relative logit difference, ours vs official, same weights (fp32; bf16 autocast on GPU), at the
    timed batch size: the scan kernel 'auto' picks depends on it, and the path timed is the path checked."""
    images = torch.randn(args.batch, 3, 224, 224, device=args.device,
                         generator=torch.Generator(args.device).manual_seed(1))
    parity = {}
    for dtype in args.dtypes:
        with torch.inference_mode(), torch.autocast(args.device.split(':')[0], dtype=DTYPES[dtype] or torch.float32,
                                                    enabled=DTYPES[dtype] is not None):
            parity[dtype] = max_rel_diff(ours(images), official(images))
    limits = dict(fp32=1e-5, bf16=2e-2)
    if any(parity[d] > limits[d] for d in parity):
        raise SystemExit(f'logits differ from the official forward on the same weights: {parity}; not timing')
    return parity


def timer(device):
    if device.startswith('cuda'):
        def run(fn):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            return start.elapsed_time(end) / 1e3
        return run
    return wall_seconds


def reduction_overhead(vim, model, images, measure, iters):
    """Seconds per forward spent in the reduction steps, replayed on the states they received:
    ``(gpu, eager)``. ``gpu`` is their CUDA work alone (the steps replayed as one CUDA graph), what
    they add to a forward whose host keeps ahead of the GPU; ``eager`` is the steps called from
    Python, host launch cost included, what they add to a host-bound forward (on CPU both are the
    eager time)."""
    if vim.reduction is None:
        return 0., 0.
    steps = []
    removed = vim.removed_per_layer(vim.patch_embed.grid_size(*images.shape[2:]))
    original = vim.reduction.reduce

    def capture(state, r, score):
        steps.append((state, r, score))
        return original(state, r, score)

    vim.reduction.reduce = capture
    graph, vim.cuda_graph = vim.cuda_graph, False  # a replay would not call Python
    try:
        with torch.no_grad():
            model(images)
    finally:
        vim.reduction.reduce, vim.cuda_graph = original, graph
    reducer = vim.reduction.reducer
    assert len(steps) == sum(1 for r in removed if r)

    def one_pass():
        for state, r, score in steps:
            apply_plan(state, reducer.plan(state, r, score))

    def replay():
        for _ in range(iters):
            one_pass()

    eager = measure(replay) / iters
    if not images.is_cuda:
        return eager, eager
    with torch.no_grad():
        return cuda_graph_seconds(one_pass, 10 * iters), eager


def bench_arch(arch, runs, dtype_name, args, inputs, official=None, frames=0):
    """One row per run: images (or clips) /s (median of rounds), per-round spread, latency, peak memory."""
    measure = timer(args.device)
    cuda = args.device.startswith('cuda')
    state_dict = official.state_dict() if official is not None else None
    models = {run: (official, None) if run == 'official' else build(arch, run, args, state_dict, frames)
              for run in runs}
    dtype = DTYPES[dtype_name]
    peak = dict.fromkeys(runs, 0.)

    def forward(model, k, n):
        def fn():
            with torch.inference_mode(), torch.autocast(args.device.split(':')[0], dtype=dtype or torch.float32,
                                                        enabled=dtype is not None):
                for i in range(n):
                    model(inputs[(k + i) % len(inputs)])
        return fn

    def tracked(run, fn):  # extra memory over what is resident before the call (graph pools: at capture)
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            resident = torch.cuda.memory_allocated()
        seconds = measure(fn)
        if cuda:
            peak[run] = max(peak[run], (torch.cuda.max_memory_allocated() - resident) / 2**30)
        return seconds

    for run, (model, _) in models.items():  # warm-up: kernels, autotuning, allocator, graph capture
        tracked(run, forward(model, 0, args.warmup))
    times = interleaved_rounds({run: partial(lambda run, k: tracked(run, forward(models[run][0], k, args.iters))
                                             / args.iters, run) for run in runs}, args.rounds)
    rows = []
    for run, (model, vim) in models.items():
        median = statistics.median(times[run])
        round_ips = [args.batch / t for t in times[run]]
        overhead = eager_overhead = 0.
        if vim is not None:
            with torch.autocast(args.device.split(':')[0], dtype=dtype or torch.float32, enabled=dtype is not None):
                overhead, eager_overhead = reduction_overhead(vim, model, inputs[0], measure, 3)
        if vim is None:  # the official model: the same network as ours unreduced
            with torch.device('meta'):
                vim_for_flops = VisionMamba(**vim_arch(arch))
        else:
            vim_for_flops = vim
        flops = vim_for_flops.flops(vim_for_flops.patch_embed.grid_size(*inputs[0].shape[2:])).total
        rows.append(dict(arch=arch, frames=frames, dtype=dtype_name, ops=args.ops, run=run, batch=args.batch, seconds=median,
                         latency_ms=1e3 * median, images_per_s=args.batch / median, round_images_per_s=round_ips,
                         spread=spread(times[run]),
                         overhead_share=overhead / median, eager_overhead_share=eager_overhead / median,
                         peak_gib=peak[run] if cuda else None, gflops=flops / 1e9))
    for base in ('none', 'official'):  # rows of one (arch, frames, dtype): ratios within them
        if base in times:
            for row in rows:
                row[f'vs_{base}'] = row['images_per_s'] / next(r['images_per_s'] for r in rows if r['run'] == base)
    return rows


def check_backends(args):
    """Max relative difference to the CPU path (PyTorch ops on the CPU, fp32), same weights and
    inputs: the CUDA kernels in fp32 and under bf16 autocast, eager and replayed as CUDA graphs, and
    the PyTorch ops on the GPU."""
    rows = []
    for arch, frames in arch_variants(args):
        model, _ = build(arch, 'mtr@0.4' if 'mtr@0.4' in args.runs else 'none', argparse.Namespace(
            device='cpu', dense=None, config=None, layers=args.layers), frames=frames)
        images = make_inputs(2 if frames else 8, frames, 224, 'cpu', count=1)[0]
        set_ops_backend('torch')
        with torch.no_grad():
            reference = model(images).double()
        model.to(args.device)
        for ops, dtype_name, graph in (('cuda', 'fp32', False), ('cuda', 'bf16', False), ('cuda', 'fp32', True),
                                       ('cuda', 'bf16', True), ('torch', 'fp32', False)):
            set_ops_backend(ops)
            model.cuda_graph = graph
            with torch.inference_mode(), torch.autocast('cuda', dtype=DTYPES[dtype_name] or torch.float32,
                                                        enabled=dtype_name != 'fp32'):
                for _ in range(2 if graph else 1):  # a graph is captured, then replayed
                    out = model(images.to(args.device)).double().cpu()
            rel = max_rel_diff(out, reference)
            name = f'{ops}{" + graph" if graph else ""} on {args.device}'
            rows.append(dict(arch=arch_label(arch, frames), ops=name, dtype=dtype_name, reduction=repr(model.reduction),
                             max_rel_diff=rel))
            print(f'{arch_label(arch, frames)} {name} {dtype_name} vs CPU path fp32: max rel diff {rel:.2e}', flush=True)
        set_ops_backend('auto')
    return rows


def arch_label(arch, frames=0):
    return f'{arch} {frames}f' if frames else arch


def write_report(results, out_dir):
    os.makedirs(out_dir, exist_ok=True)
    what = f'dense backbone at {results["dense"]}x{results["dense"]}' if results.get('dense') else 'classifier at 224x224'
    if results.get('config'):
        what = f'{results["config"]} (backbone + neck + decode head) at {results["dense"]}x{results["dense"]}'
    lines = [f'# Speed: {results["device"]}, {what}', '',
             f'torch {results["torch"]}, CUDA kernels: {results["cuda_kernels"]}, batch {results["batch"]}, '
             f'reducing layers {results["layers"]}; medians of {results["rounds"]} interleaved rounds of '
             f'{results.get("iters", "?")} forwards; spread = (max - min) / median of the rounds\' images/s.', '']
    busy = [f'{r["arch"]} {r["dtype"]} {r["run"]}' for r in results['rows'] if r['spread'] > BUSY_SPREAD]
    if busy:
        lines += [f'**Machine busy**: the rounds of {", ".join(busy)} spread by more than {BUSY_SPREAD:.0%}; their '
                  'speeds and ratios are not reliable. Measure again on an idle machine.', '']
    if results.get('official_parity'):
        lines += ['Official forward vs ours, same weights, max relative logit difference: ' + ', '.join(
            f'{arch} {d}: {v:.1e}' for arch, p in results['official_parity'].items() for d, v in p.items()), '']
    if results.get('backends'):
        lines += ['## GPU paths vs the CPU path (PyTorch ops on CPU, fp32; same weights, batch 8, video 2)', '',
                  '| arch | ops | dtype | max rel diff of logits |', '|---|---|---|---|']
        lines += [f'| {r["arch"]} | {r["ops"]} | {r["dtype"]} | {r["max_rel_diff"]:.2e} |' for r in results['backends']]
        lines.append('')
    cols = ['vs_official', 'vs_none']
    lines += ['## Throughput', '', 'GFLOPs per image or clip (one scan direction); video rows count clips (arch Nf: '
              'N frames, 1 + 196 N tokens).', '',
              '| arch | dtype | run | GFLOPs | images/s | ms / batch | vs official | vs ours unreduced '
              '| round spread | reduction overhead (GPU) | (eager) | peak GiB |', '|---' * 12 + '|']
    for r in results['rows']:
        ratios = ' | '.join(f'{r[c]:.2f}x' if r.get(c) else 'n/a' for c in cols)
        peak = r['peak_gib']
        lines.append(f'| {arch_label(r["arch"], r.get("frames", 0))} | {r["dtype"]} | {r["run"]} | {r["gflops"]:.2f} | {r["images_per_s"]:.1f} | '
                     f'{r["latency_ms"]:.2f} | {ratios} | {r["spread"]:.1%} | {r["overhead_share"]:.1%} | '
                     f'{r.get("eager_overhead_share", r["overhead_share"]):.1%} | '
                     f'{"n/a" if peak is None else f"{peak:.2f}"} |')
    with open(osp.join(out_dir, 'speed.md'), 'w') as f:
        f.write('\n'.join(lines) + '\n')
    plt = pyplot()
    if plt is None:
        return
    base = 'vs_official' if any(r.get('vs_official') for r in results['rows']) else 'vs_none'
    fig, ax = plt.subplots(figsize=(6, 4))
    xs = [i / 100 for i in range(0, 51)]
    ax.plot(xs, [1 / (1 - x) for x in xs], 'k--', label='ideal (1 / (1 - reduction))')
    for arch, frames in sorted({(r['arch'], r.get('frames', 0)) for r in results['rows']}):
        for dtype in sorted({r['dtype'] for r in results['rows']}):
            for graph in ('', '+graph'):
                pts = sorted((parse_run(r['run'])['target'], r[base]) for r in results['rows']
                             if (r['arch'], r.get('frames', 0)) == (arch, frames) and r['dtype'] == dtype
                             and r['run'].startswith('mtr@') and r['run'].endswith('+graph') == bool(graph) and r.get(base))
                if pts:
                    name = arch_label(arch, frames) if is_video_arch(arch) else f'Vim-{arch[0].upper()}'
                    ax.plot([p[0] for p in pts], [p[1] for p in pts], 'o-', label=f'MTR {name} {dtype}{graph}')
    ax.set_xlabel('FLOPs reduction')
    ax.set_ylabel(f'images/s {base.replace("_", " ")} ' + ('(official unreduced)' if base == 'vs_official' else '(ours unreduced)'))
    ax.legend(fontsize=7)
    ax.grid(alpha=.3)
    save_figure(fig, osp.join(out_dir, 'speedup_vs_flops.png'))


def main(argv=None):
    args = parse_args(argv)
    if rebuild_report(args, write_report):
        return
    models_mamba = import_official(args.official) if args.official else None
    if args.config:
        args.archs = [load_config(args.config).model.backbone.arch]
    runs = args.runs.split(',')
    results = dict(device=torch.cuda.get_device_name() if args.device.startswith('cuda') else 'cpu',
                   torch=torch.__version__, cuda_kernels=cuda_kernels_available(), scan_kernel=args.scan_kernel,
                   batch=args.batch, dense=args.dense,
                   frames=args.frames, config=args.config,
                   rounds=args.rounds, iters=args.iters, layers=args.layers, official_parity={}, rows=[])
    os.makedirs(args.out_dir, exist_ok=True)
    set_ops_backend(args.ops)
    set_scan_kernel(args.scan_kernel)
    if args.check_backends:
        results['backends'] = check_backends(args)
    for arch, frames in arch_variants(args):
        inputs = make_inputs(args.batch, frames, args.dense or 224, args.device)
        official = None
        if models_mamba is not None:
            torch.manual_seed(0)
            official = getattr(models_mamba, OFFICIAL_FACTORY[arch])().to(args.device).eval()
            ours, _ = build(arch, 'none', args, official.state_dict())
            results['official_parity'][arch] = official_parity(official, ours, args)
            print(f'{arch}: logits vs official, max rel diff {results["official_parity"][arch]}', flush=True)
            del ours
        for dtype_name in args.dtypes:
            rows = bench_arch(arch, runs, dtype_name, args, inputs, official, frames)
            for r in rows:
                print(f'{arch_label(arch, frames):5} {dtype_name} {r["run"]:16} {r["images_per_s"]:9.1f} img/s  {r["latency_ms"]:8.2f} ms  '
                      f'vs official {r.get("vs_official") or 0:.2f}  vs ours {r.get("vs_none") or 0:.2f}  '
                      f'spread {r["spread"]:.1%}  overhead {r["overhead_share"]:.1%} GPU, '
                      f'{r["eager_overhead_share"]:.1%} eager', flush=True)
            results['rows'] += rows
            with open(osp.join(args.out_dir, 'speed.json'), 'w') as f:  # partial results survive a time-out
                json.dump(results, f, indent=1)
        del official, inputs
    write_report(results, args.out_dir)


if __name__ == '__main__':
    main()
