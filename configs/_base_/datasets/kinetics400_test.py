# Kinetics-400 val as VideoMamba evaluates it: 8 frames per clip sampled uniformly, 4 clips x 3
# crops = 12 views per video, shorter side 224, ImageNet mean/std (model data_preprocessor).
# Annotation lines are "relative/path.mp4 label". For 16 frames set the backbone's num_frames and
# this pipeline's clip_len (test_dataloader.dataset.pipeline.1.clip_len=16).
dataset_type = 'VideoDataset'
data_root = 'data/kinetics400/videos_val'
ann_file = 'data/kinetics400/kinetics400_val_list_videos.txt'
test_pipeline = [
    dict(type='DecordInit'),
    dict(type='UniformSample', clip_len=8, num_clips=4, test_mode=True),
    dict(type='DecordDecode'),
    dict(type='Resize', scale=(-1, 224)),
    dict(type='ThreeCrop', crop_size=224),
    dict(type='FormatShape', input_format='NCTHW'),
    dict(type='PackActionInputs'),
]
test_dataloader = dict(
    batch_size=1, num_workers=4, persistent_workers=False,
    dataset=dict(type=dataset_type, ann_file=ann_file, data_prefix=dict(video=data_root), pipeline=test_pipeline,
                 test_mode=True),
    sampler=dict(type='DefaultSampler', shuffle=False))
test_evaluator = dict(type='AccMetric')
test_cfg = dict(type='TestLoop')
val_dataloader = test_dataloader
val_evaluator = test_evaluator
val_cfg = dict(type='ValLoop')
