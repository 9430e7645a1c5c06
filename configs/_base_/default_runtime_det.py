default_scope = 'mmdet'
custom_imports = dict(imports=['mtr_mm.models', 'mtr_mm.engine'], allow_failed_imports=False)
# Logs the reduction and the measured backbone GFLOPs per image with the test metrics.
custom_hooks = [dict(type='ReductionInfoHook')]
env_cfg = dict(cudnn_benchmark=False, mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
               dist_cfg=dict(backend='nccl'))
vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='DetLocalVisualizer', vis_backends=vis_backends)
log_processor = dict(type='LogProcessor', window_size=50, by_epoch=False)
log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=None, deterministic=False)
# Dense models never use Vim's final norm (they read layer features), so DDP must allow unused parameters.
find_unused_parameters = True
