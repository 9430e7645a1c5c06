_base_ = './default_runtime.py'
default_scope = 'mmseg'
env_cfg = dict(cudnn_benchmark=True)
visualizer = dict(type='SegLocalVisualizer')
log_processor = dict(by_epoch=False)
# Dense models never use Vim's final norm (they read layer features), so DDP must allow unused parameters.
find_unused_parameters = True
