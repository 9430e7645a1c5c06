"""Evaluate a config (classification, segmentation or detection) with mmengine's Runner.

    python tools/test.py CONFIG [CHECKPOINT] [--work-dir DIR] [--out OUT] [--show-dir DIR]
                         [--cfg-options k=v ...] [--launcher none|pytorch|slurm|mpi]

The library (mmpretrain / mmseg / mmdet / mmaction2) is chosen from the config's default_scope.
CHECKPOINT may be an official hustvl/Vim or OpenGVLab/VideoMamba file (converted on the fly, loaded
safely) or one saved by tools/train.py.
Multi-GPU: tools/dist_test.sh; clusters: tools/slurm_test.sh.
"""
import argparse
import json
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a checkout without install

from mmengine.model import is_model_wrapper  # noqa: E402
from mmengine.runner import Runner  # noqa: E402

from mtr_mm.apis import close_distributed, init_cpu_distributed  # noqa: E402
from mtr_mm.apis.runner import check_writable, parse_runner_args, runner_config  # noqa: E402
from mtr_mm.checkpoint import load_model_checkpoint  # noqa: E402
from mtr_mm.ops import set_scan_kernel  # noqa: E402
from mtr_mm.ops.backend import SCAN_KERNELS  # noqa: E402
from tools import cli  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Test a Vim / MTR model')
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', nargs='?', help='checkpoint file (official Vim / VideoMamba or this project\'s)')
    parser.add_argument('--work-dir', help='where logs and metrics go (default ./work_dirs/CONFIG_NAME)')
    parser.add_argument('--out', help='classification/detection: a .pkl of raw predictions; '
                        'segmentation: a folder for the predicted label maps')
    parser.add_argument('--show-dir', help='save pictures of the predictions (and token maps) here')
    parser.add_argument('--cuda-graph', action='store_true',
                        help='on GPU, replay the backbone forward as CUDA graphs (same numbers; removes the '
                        'host-side launch cost that bounds small batches)')
    parser.add_argument('--scan-kernel', default='auto', choices=SCAN_KERNELS,
                        help="on GPU, the selective-scan kernel of inference: 'auto' (default) takes our Triton "
                        "scan where it is faster (large batches) and mamba-ssm's otherwise")
    return parse_runner_args(parser, argv)


def configure_outputs(cfg, args):
    """Apply --out and --show-dir the way each library's own test.py does, after checking that they
    can be written (the work dir: runner_config)."""
    scope = cfg.default_scope
    if args.out:
        check_writable(args.out, '--out', folder=scope == 'mmseg')
    if args.show_dir:
        check_writable(args.show_dir, '--show-dir', folder=True)
    if args.out:
        if scope == 'mmseg':
            cfg.test_evaluator['output_dir'] = args.out
            cfg.test_evaluator['keep_results'] = True
        else:
            if not args.out.endswith(('.pkl', '.pickle')):
                raise ValueError(f'--out must be a .pkl file for {scope}, got {args.out!r}')
            dump = dict(type='DumpDetResults' if scope == 'mmdet' else 'DumpResults', out_file_path=args.out)
            evaluators = cfg.test_evaluator if isinstance(cfg.test_evaluator, list) else [cfg.test_evaluator]
            cfg.test_evaluator = [*evaluators, dump]
    if args.show_dir:
        if scope == 'mmaction':
            raise ValueError('--show-dir draws images and their token maps; video models (mmaction2) have none')
        hook = cfg.default_hooks.visualization
        if scope == 'mmpretrain':
            hook.update(enable=True, out_dir=args.show_dir, interval=1)
        elif scope == 'mmseg':
            import mtr_mm.engine.seg_visualization  # noqa: F401  registers SegTestVisualizationHook
            hook.update(type='SegTestVisualizationHook', draw=True, interval=1)
            cfg.visualizer['save_dir'] = args.show_dir
        else:
            hook.update(draw=True, interval=1, test_out_dir=osp.abspath(args.show_dir))
        cfg.custom_hooks = [*cfg.get('custom_hooks', []), dict(type='TokenVisualizationHook', out_dir=args.show_dir)]


def check_test_data(cfg):
    """Fail early, naming the config key to set, when the test data is not where the config says
    (the libraries only report a missing file from deep inside dataset or metric construction)."""
    dataset = cfg.test_dataloader.dataset
    paths = [(dataset.get('data_root'), 'test_dataloader.dataset.data_root')]
    if dataset.get('ann_file'):
        paths.append((osp.join(dataset.get('data_root') or '', dataset.ann_file), 'test_dataloader.dataset.ann_file'))
    prefixes = dataset.get('data_prefix') or {}  # a folder (mmpretrain) or a dict of them
    if isinstance(prefixes, dict) and prefixes.get('video'):  # mmaction2's video folder
        paths.append((osp.join(dataset.get('data_root') or '', prefixes['video']),
                      'test_dataloader.dataset.data_prefix.video'))
    if isinstance(cfg.test_evaluator, list):
        paths += [(e.get('ann_file'), f'test_evaluator.{i}.ann_file') for i, e in enumerate(cfg.test_evaluator)]
    else:
        paths.append((cfg.test_evaluator.get('ann_file'), 'test_evaluator.ann_file'))
    for path, key in paths:
        if path and '://' not in str(path) and not osp.exists(path):
            raise FileNotFoundError(f'test data not found: {path} does not exist. Set {key} in the config or '
                                    f'with --cfg-options {key}=PATH')
    for path, key in dict(paths).items():  # one parse per file (dataset and metric share COCO's)
        if path and str(path).endswith('.json') and osp.isfile(path):
            check_json(path, key)
    for name, prefix in (prefixes.items() if isinstance(prefixes, dict) else [('', prefixes)]):
        folder = osp.join(dataset.get('data_root') or '', prefix)
        if osp.isdir(folder) and not os.listdir(folder):
            key = 'test_dataloader.dataset.data_prefix' + (f'.{name}' if name else '')
            raise FileNotFoundError(f'test data folder {folder} is empty ({key}): put the test images there or '
                                    f'point {key} / test_dataloader.dataset.data_root at them')


def check_json(path: str, key: str):
    try:
        with open(path) as f:
            json.load(f)
    except (ValueError, UnicodeDecodeError) as error:
        raise ValueError(f'{path} ({key}) is not a readable JSON annotation file: {error}. Point {key} at the '
                         'annotation file (e.g. annotations/instances_val2017.json for COCO).') from None


def build_test_runner(cfg, checkpoint=None) -> Runner:
    """The config's Runner with ``checkpoint`` loaded through the safe, official-aware loader (not
    mmengine's load_from, which expects this project's key layout); without one, the config's own
    init (e.g. a Pretrained backbone), else random weights."""
    cfg.load_from = None
    runner = Runner.from_cfg(cfg)
    model = runner.model.module if is_model_wrapper(runner.model) else runner.model
    if checkpoint:
        load_model_checkpoint(model, checkpoint)
        runner.logger.info(f'loaded checkpoint {checkpoint}')
    else:
        model.init_weights()
        runner.logger.warning('no checkpoint given: testing the initial weights of the config')
    return runner


def main(argv=None):
    args = parse_args(argv)
    cfg = runner_config(args)
    if args.cuda_graph:
        cfg.model.backbone.cuda_graph = True
    set_scan_kernel(args.scan_kernel)
    check_test_data(cfg)
    configure_outputs(cfg, args)
    init_cpu_distributed(cfg)
    metrics = build_test_runner(cfg, args.checkpoint).test()
    close_distributed()
    return metrics


if __name__ == '__main__':
    cli.run(main)
