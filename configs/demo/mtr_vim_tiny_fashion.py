# The embedded demo: the real MTR classification config (Vim-T, 40 % fewer FLOPs), pointed at the
# Fashion-MNIST-on-photos images shipped in demo/data and the 10-class checkpoint of the GPU proxy
# run (configs/proxy/vim_tiny_fashion_short.py). The images are 224 x 224 as in training; the resize + crop
# only guarantee that size for any image (a batch of mixed sizes would be zero-padded into the scan).
_base_ = '../mtr_vim_cls.py'
model = dict(data_preprocessor=dict(num_classes=10), head=dict(num_classes=10))
test_pipeline = [dict(type='LoadImageFromFile'), dict(type='ResizeEdge', scale=224, edge='short'),
                 dict(type='CenterCrop', crop_size=224), dict(type='PackInputs')]
test_dataloader = dict(
    batch_size=8, num_workers=0,
    dataset=dict(_delete_=True, type='CustomDataset', data_root='demo/data/fashion_cls', data_prefix='images',
                 ann_file='meta/test.txt', with_label=True, pipeline=test_pipeline))
val_dataloader = test_dataloader
