_base_ = './default_runtime.py'
default_scope = 'mmdet'
visualizer = dict(type='DetLocalVisualizer')
log_processor = dict(type='LogProcessor', window_size=50, by_epoch=False)
# Dense models never use Vim's final norm (they read layer features), so DDP must allow unused parameters.
find_unused_parameters = True
