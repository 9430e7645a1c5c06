"""Train Vim-T (the official architecture) from scratch on Fashion-MNIST garments on photographs.

    # H200 with mamba-ssm's kernels: a 6-minute training budget
    python tools/benchmarks/train_fashion_cls.py --minutes 6 --out-dir work_dirs/fashion_vim_t
    # CPU smoke run: 2 steps of a tiny model, 64 test images
    python tools/benchmarks/train_fashion_cls.py --device cpu --steps 2 --batch 4 --embed-dims 32 --depth 4 \
        --test-count 64 --out-dir /tmp/fashion_tiny

Plain PyTorch (no OpenMMLab runner): every batch is rendered on the training device from the
28x28 garments and the photo atlas (mtr_mm.data.fashion_scenes), so nothing but the ~35 MB of
sources has to be shipped. Sample i of the stream is garment i % 60000 of the Fashion-MNIST train
split on a fresh background, position, scale, flip and tint; each epoch visits the garments in a
seeded random order. AdamW, linear warm-up then cosine decay, bf16 autocast, label smoothing,
gradient clipping, stochastic depth.

Time budget: without --steps, the step time is measured over the first steps and the schedule is
laid out to end when --minutes of training have passed; training stops (and saves) in any case
when the budget is spent or on SIGTERM. At the end, top-1 on the fixed held-out test set: images 0..N-1 of
the 'cls_test' part (Fashion-MNIST test garments, --test-seed), the set eval_reduction_cls.py uses.

Writes into --out-dir: vim_fashion.pth ({'model': fp16 state_dict in the official Vim key layout,
'args': plain dict}, loadable with mtr_mm.checkpoint) and train_log.json (settings, curve, top-1).
"""
import argparse
import json
import math
import os
import os.path as osp
import signal
import sys
import time

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from mtr_mm.data import fashion_scenes as fs  # noqa: E402
from mtr_mm.models.vim import VisionMamba, vim_arch  # noqa: E402
from mtr_mm.ops import cuda_kernels_available, set_ops_backend  # noqa: E402

OFFICIAL_NAME = 'vim_tiny_patch16_224_bimambav2_final_pool_mean_abs_pos_embed_with_midclstok_div2'
CHECKPOINT = 'vim_fashion.pth'
DTYPES = {'fp32': None, 'bf16': torch.bfloat16}
# Parameters kept out of weight decay, as in the official training (and Mamba's _no_weight_decay).
NO_DECAY = ('pos_embed', 'cls_token', 'A_log', 'A_b_log', 'D', 'D_b')
CALIBRATION_STEPS = (5, 25)   # steps timed to lay out the schedule: after warm-up of the kernels
BUDGET_MARGIN = 0.95          # lay the schedule out for 95 % of the budget left: step times drift


def parse_args(argv=None):
    cuda = torch.cuda.is_available()
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--out-dir', default='work_dirs/fashion_vim_t')
    parser.add_argument('--minutes', type=float, default=6.0, help='training time budget')
    parser.add_argument('--steps', type=int, help='fixed number of steps (instead of fitting the budget)')
    parser.add_argument('--batch', type=int, default=256)
    parser.add_argument('--lr', type=float, default=1e-3, help='peak learning rate')
    parser.add_argument('--min-lr', type=float, default=1e-5)
    parser.add_argument('--warmup-steps', type=int, default=150)
    parser.add_argument('--weight-decay', type=float, default=0.05)
    parser.add_argument('--label-smoothing', type=float, default=0.1)
    parser.add_argument('--clip-grad', type=float, default=1.0, help='max gradient norm')
    parser.add_argument('--drop-path', type=float, default=0.05)
    parser.add_argument('--embed-dims', type=int, help='override Vim-T width (tests)')
    parser.add_argument('--depth', type=int, help='override Vim-T depth (tests)')
    parser.add_argument('--seed', type=int, default=0, help='training data order and model init')
    parser.add_argument('--test-seed', type=int, default=0, help='seed of the fixed held-out test set')
    parser.add_argument('--test-count', type=int, default=10000, help='held-out test images (<= 10000)')
    parser.add_argument('--device', default='cuda' if cuda else 'cpu')
    parser.add_argument('--dtype', choices=list(DTYPES), default='bf16' if cuda else 'fp32', help='autocast dtype')
    parser.add_argument('--ops', choices=['auto', 'torch', 'cuda'], default='auto',
                        help="Mamba ops backend ('cuda' fails at once when mamba-ssm's kernels are missing)")
    parser.add_argument('--fashion-dir', help='Fashion-MNIST .gz folder (default: see mtr_mm.data.fashion_scenes)')
    parser.add_argument('--log-interval', type=int, default=25)
    return parser.parse_args(argv)


def build_model(embed_dims=None, depth=None, drop_path=0., reduction=None) -> VisionMamba:
    """The official Vim-T (middle class token, abs pos embed) with a 10-class head; width and
    depth overridable for tests; ``reduction`` as VisionMamba takes it."""
    overrides = {k: v for k, v in dict(embed_dims=embed_dims, depth=depth).items() if v is not None}
    return VisionMamba(img_size=fs.CLS_SIZE, num_classes=len(fs.FASHION_CLASSES), drop_path_rate=drop_path,
                       reduction=reduction, **vim_arch('tiny', **overrides))


def param_groups(model, weight_decay: float) -> list:
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        skip = param.ndim <= 1 or name.endswith('.bias') or name.split('.')[-1] in NO_DECAY
        (no_decay if skip else decay).append(param)
    return [dict(params=decay, weight_decay=weight_decay), dict(params=no_decay, weight_decay=0.)]


def lr_at(step: int, total: int, args) -> float:
    """Linear warm-up to --lr, then cosine to --min-lr at ``total`` (None: not laid out yet)."""
    if step < args.warmup_steps:
        return args.lr * (step + 1) / args.warmup_steps
    if total is None:
        return args.lr
    progress = min((step - args.warmup_steps) / max(total - args.warmup_steps, 1), 1.)
    return args.min_lr + (args.lr - args.min_lr) * 0.5 * (1 + math.cos(math.pi * progress))


def sample_stream(seed: int, num_garments: int, batch: int):
    """Batches of sample indices: epoch e visits garments in a seeded order, sample = e * N + garment."""
    epoch = 0
    while True:
        order = torch.randperm(num_garments, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
        for start in range(0, num_garments - batch + 1, batch):  # full batches only
            yield epoch, epoch * num_garments + order[start:start + batch]
        epoch += 1


def autocast(device: str, dtype_name: str):
    dtype = DTYPES[dtype_name]
    return torch.autocast(device.split(':')[0], dtype=dtype, enabled=dtype is not None)


@torch.no_grad()
def evaluate_top1(model, images, labels, batch: int, device: str, dtype_name: str) -> float:
    """Top-1 (%) of ``model`` on uint8 ``images`` (N, 3, 224, 224) already on ``device``."""
    model.eval()
    correct = 0
    for start in range(0, len(images), batch):
        with autocast(device, dtype_name):
            logits = model(fs.normalize(images[start:start + batch]))
        correct += (logits.argmax(-1) == labels[start:start + batch]).sum().item()
    return 100. * correct / len(images)


def save_checkpoint(path: str, model, args_dict: dict):
    """The official Vim file layout: {'model': state_dict, 'args': ...}, here fp16 and a plain dict."""
    state_dict = {k: v.detach().half().cpu() if v.is_floating_point() else v.cpu()
                  for k, v in model.state_dict().items()}
    torch.save(dict(model=state_dict, args=args_dict), path)


def synchronized_time(device: str) -> float:
    """perf_counter once the device has finished the queued work."""
    if device.startswith('cuda'):
        torch.cuda.synchronize()
    return time.perf_counter()


class StopFlag:
    """Set by SIGTERM (e.g. a wall-clock limit), so the loop can still save."""

    def __init__(self):
        self.raised = False
        signal.signal(signal.SIGTERM, self.set)

    def set(self, *_):
        self.raised = True


def train(model, sources, args, log) -> dict:
    """The training loop; returns a summary (steps, images, seconds, the laid-out total)."""
    device = args.device
    optimizer = torch.optim.AdamW(param_groups(model, args.weight_decay), lr=args.lr, betas=(0.9, 0.999))
    budget = args.minutes * 60
    total = args.steps
    stop = StopFlag()
    stream = sample_stream(args.seed, sources.num_garments, args.batch)
    loss_sum = torch.zeros((), device=device)
    correct_sum = torch.zeros((), device=device, dtype=torch.long)
    seen, step, epoch = 0, 0, 0
    begin = window_begin = time.perf_counter()
    model.train()
    while total is None or step < total:
        if total is None and step in CALIBRATION_STEPS:
            now = synchronized_time(device)
            if step == CALIBRATION_STEPS[0]:
                calibration_begin = now
            else:  # lay the schedule out so that it ends with the budget
                per_step = (now - calibration_begin) / (CALIBRATION_STEPS[1] - CALIBRATION_STEPS[0])
                total = step + int(BUDGET_MARGIN * (budget - (now - begin)) / per_step)
                log(f'{per_step * 1e3:.0f} ms/step: schedule laid out for {total} steps')
                if total < 2 * args.warmup_steps:
                    log(f'warning: only {total} steps for {args.warmup_steps} warm-up steps')
        if stop.raised or time.perf_counter() - begin > budget:
            log(f'stopping at step {step}: ' + ('SIGTERM' if stop.raised else 'time budget spent'))
            break
        epoch, index = next(stream)
        images, labels = fs.cls_batch(sources, args.seed, 'cls_train', index)
        lr = lr_at(step, total, args)
        for group in optimizer.param_groups:
            group['lr'] = lr
        with autocast(device, args.dtype):
            logits = model(fs.normalize(images))
        loss = F.cross_entropy(logits.float(), labels, label_smoothing=args.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip_grad)
        optimizer.step()
        loss_sum += loss.detach()
        correct_sum += (logits.argmax(-1) == labels).sum()
        step += 1
        seen += len(labels)
        if step % args.log_interval == 0 or step == total:
            count = (step - 1) % args.log_interval + 1
            now = time.perf_counter()
            entry = dict(step=step, epoch=epoch, lr=lr, loss=loss_sum.item() / count,
                         train_top1=100. * correct_sum.item() / (count * args.batch),
                         images_per_s=count * args.batch / (now - window_begin), elapsed_s=now - begin)
            log(f'step {step}/{total or "?"} epoch {epoch} lr {lr:.2e} loss {entry["loss"]:.4f} '
                f'train top-1 {entry["train_top1"]:.1f} {entry["images_per_s"]:.0f} img/s '
                f'{entry["elapsed_s"]:.0f} s', entry)
            loss_sum.zero_()
            correct_sum.zero_()
            window_begin = now
    return dict(steps=step, planned_steps=total, images=seen, epochs=seen / sources.num_garments,
                train_seconds=time.perf_counter() - begin)


def main(argv=None):
    args = parse_args(argv)
    os.makedirs(args.out_dir, exist_ok=True)
    set_ops_backend(args.ops)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    curve = []

    def log(message, entry=None):
        print(message, flush=True)
        if entry is not None:
            curve.append(entry)

    torch.manual_seed(args.seed)
    model = build_model(args.embed_dims, args.depth, args.drop_path).to(args.device)
    kernels = cuda_kernels_available() and args.device.startswith('cuda') and args.ops != 'torch'
    log(f'Vim (embed {model.embed_dims}, depth {model.depth}), {sum(p.numel() for p in model.parameters()):,} '
        f'parameters, {args.device} {args.dtype}, Mamba CUDA kernels: {kernels}')
    train_sources = fs.load_sources(args.fashion_dir, 'train', args.device)
    summary = train(model, train_sources, args, log)

    test_sources = fs.load_sources(args.fashion_dir, 'test', args.device)
    begin = time.perf_counter()
    images, labels = fs.cls_set(test_sources, args.test_seed, 'cls_test', args.test_count)
    top1 = evaluate_top1(model, images, labels, 2 * args.batch, args.device, args.dtype)
    log(f'test top-1 {top1:.2f} % on {len(labels)} images ({time.perf_counter() - begin:.0f} s)')

    settings = {k: v for k, v in vars(args).items() if k not in ('out_dir', 'fashion_dir')}
    official = (model.embed_dims, model.depth) == tuple(vim_arch('tiny').values())
    checkpoint_args = dict(model=OFFICIAL_NAME if official else 'vim_custom', nb_classes=len(fs.FASHION_CLASSES),
                           input_size=fs.CLS_SIZE, embed_dims=model.embed_dims, depth=model.depth, classes=list(fs.FASHION_CLASSES),
                           data='mtr_mm.data.fashion_scenes', test_top1=top1, train=summary, settings=settings)
    save_checkpoint(osp.join(args.out_dir, CHECKPOINT), model, checkpoint_args)
    results = dict(settings=settings, **summary, test_top1=top1, test_count=len(labels),
                   device=torch.cuda.get_device_name() if args.device.startswith('cuda') else 'cpu',
                   torch=torch.__version__, mamba_cuda_kernels=kernels, curve=curve)
    with open(osp.join(args.out_dir, 'train_log.json'), 'w') as f:
        json.dump(results, f, indent=1)
    log(f'saved {osp.join(args.out_dir, CHECKPOINT)} and train_log.json')


if __name__ == '__main__':
    main()
