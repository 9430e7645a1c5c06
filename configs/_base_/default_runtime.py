# What every task's runtime shares (default_runtime_{cls,seg,det}.py add the library and its visualizer).
custom_imports = dict(imports=['mtr_mm.models', 'mtr_mm.engine'], allow_failed_imports=False)
# Logs the reduction and the measured backbone GFLOPs per image with the test metrics; refuses empty
# image files, batches that would be zero-padded into the scan and non-finite outputs; keeps the
# distributed runs' result exchange under the work dir.
custom_hooks = [dict(type='ReductionInfoHook'), dict(type='InputCheckHook'), dict(type='CollectUnderWorkDirHook')]
env_cfg = dict(cudnn_benchmark=False, mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
               dist_cfg=dict(backend='nccl'))
vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(vis_backends=vis_backends)  # the task's runtime sets its type
log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=None, deterministic=False)
