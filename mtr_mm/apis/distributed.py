"""Multi-process runs on machines without GPUs (CI, CPU clusters) through mmengine's Runner."""
import torch


def sync_bn_to_bn(node):
    """Replace SyncBN by BN in a config: the same computation at test time (running statistics)."""
    if isinstance(node, dict):
        if node.get('type') == 'SyncBN':
            node['type'] = 'BN'
        for value in node.values():
            sync_bn_to_bn(value)
    elif isinstance(node, list):
        for value in node:
            sync_bn_to_bn(value)


def init_cpu_distributed(cfg):
    """mmengine's 'pytorch' launcher assumes GPUs: it calls torch.cuda.set_device (absent from CPU
    builds of torch) and hands DDP device_ids, and DDP refuses SyncBN on CPU. Without CUDA, start
    the process group here (gloo; NCCL needs GPUs), wrap the model without device ids and use BN
    (per-process statistics when training); the Runner then uses all three."""
    if cfg.launcher != 'pytorch' or torch.cuda.is_available():
        return
    sync_bn_to_bn(cfg.model)
    backend = cfg.env_cfg.get('dist_cfg', {}).get('backend', 'gloo')
    torch.distributed.init_process_group(backend='gloo' if backend == 'nccl' else backend)
    cfg.model_wrapper_cfg = dict(type='MMDistributedDataParallel', device_ids=None, broadcast_buffers=False,
                                 find_unused_parameters=cfg.get('find_unused_parameters', False))


def close_distributed():
    """End the process group once every rank is done. Neither mmengine nor torchrun does: a gloo
    group still open at interpreter exit can abort a rank ('terminate called without an active
    exception', SIGABRT) after its results were written, failing the whole run."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
