"""tools/test.py on a Kinetics-400-layout sample (videos + "path label" annotation list) generated
here: the shipped configs/mtr_videomamba_k400.py (VideoMamba-T, 8 frames, 4 clips x 3 crops, MTR at
-40 %), shrunk to a CPU-sized width and input, loading an official-layout video checkpoint (a bare
state dict, tests/reference_videomamba.py). mmaction2's AccMetric prints acc/top1 beside the backbone
GFLOPs per video (12 views) before and after reduction; the predictions equal the independent
reference's on the same views."""
import pickle
import re

import numpy as np
import pytest
import torch

pytest.importorskip('mmaction')
pytest.importorskip('decord')
cv2 = pytest.importorskip('cv2')

from reference_videomamba import reference_videomamba_forward, videomamba_state_dict  # noqa: E402
from script_runner import cfg_options, run_script  # noqa: E402

NUM_CLASSES = 5
SHRINK = {  # the shipped config at 32 channels and a 48x64 -> 32x32 input (2x2 patches per frame)
    'model.backbone.embed_dims': 32, 'model.backbone.img_size': 32,
    'model.cls_head.in_channels': 32, 'model.cls_head.num_classes': NUM_CLASSES,
    'test_dataloader.dataset.pipeline.3.scale': (-1, 32), 'test_dataloader.dataset.pipeline.4.crop_size': 32,
    'test_dataloader.num_workers': 0,
}


def make_kinetics_sample(root, labels=(0, 3, 1), frames=20, size=(48, 64)):
    """Short mp4 clips (a square moving across noise, its colour and path set by the label) in
    Kinetics' layout: videos/NAME.mp4 and an annotation list of "NAME.mp4 LABEL" lines."""
    videos = root / 'videos'
    videos.mkdir(parents=True)
    rng = np.random.default_rng(0)
    lines = []
    for index, label in enumerate(labels):
        name = f'clip_{index:03d}.mp4'
        writer = cv2.VideoWriter(str(videos / name), cv2.VideoWriter_fourcc(*'mp4v'), 10, size[::-1])
        assert writer.isOpened()
        for t in range(frames):
            frame = rng.integers(0, 60, (*size, 3), dtype=np.uint8)
            x = (t * (label + 1)) % (size[1] - 12)
            frame[10:22, x:x + 12] = (50 * label, 255 - 40 * label, 128)
            writer.write(frame)
        writer.release()
        lines.append(f'{name} {label}')
    (root / 'val_list.txt').write_text('\n'.join(lines) + '\n')
    return videos, root / 'val_list.txt'


def test_mtr_videomamba_k400_end_to_end(tmp_path):
    videos, ann_file = make_kinetics_sample(tmp_path / 'k400')
    state_dict = videomamba_state_dict(32, 24, 32, NUM_CLASSES, num_frames=8)
    checkpoint = tmp_path / 'videomamba_t16_k400_f8_tiny.pth'
    torch.save(state_dict, checkpoint)  # official video files are bare state dicts
    options = dict(SHRINK, **{'test_dataloader.dataset.ann_file': ann_file,
                              'test_dataloader.dataset.data_prefix.video': videos})
    out = tmp_path / 'preds.pkl'
    result = run_script('tools/test.py', 'configs/mtr_videomamba_k400.py', checkpoint, '--work-dir', tmp_path / 'work',
                        '--out', out, *cfg_options(options), threads=1, timeout=600)
    text = result.stdout + result.stderr
    metrics = re.search(r'acc/top1: (\d\.\d+).*backbone_gflops: (\d+\.\d+).*backbone_gflops_unreduced: (\d+\.\d+)', text)
    assert metrics, text[-3000:]
    top1, reduced, unreduced = map(float, metrics.groups())
    assert 0 <= top1 <= 1 and 'reduction: MTRReducer' in text
    assert reduced / unreduced == pytest.approx(0.6, abs=0.01)  # the config's -40 % per view
    # per video: 12 views of 1 + 8 x 4 tokens (FLOPs of the unreduced network, one direction)
    from mtr_mm.models import VisionMamba, vim_arch
    with torch.device('meta'):
        tiny = VisionMamba(**vim_arch('videomamba_tiny', embed_dims=32, img_size=32, num_frames=8,
                                      num_classes=NUM_CLASSES))
    assert unreduced == pytest.approx(12 * tiny.flops((8, 2, 2)).total / 1e9, abs=1e-4)
    predictions = pickle.load(open(out, 'rb'))
    assert len(predictions) == 3 and all(p['pred_score'].shape == (NUM_CLASSES, ) for p in predictions)


def test_unreduced_predictions_equal_the_reference_on_the_same_views(tmp_path):
    """The recognizer (views folded into the batch, softmax averaged over views) around the
    official network gives the independent reference's scores."""
    from mmengine.dataset import Compose, pseudo_collate

    from mtr_mm.apis import init_model
    videos, ann_file = make_kinetics_sample(tmp_path / 'k400', labels=(2, ))
    state_dict = videomamba_state_dict(32, 24, 32, NUM_CLASSES, num_frames=8, seed=3)
    checkpoint = tmp_path / 'official.pth'
    torch.save(state_dict, checkpoint)
    model = init_model('configs/videomamba_k400/videomamba_tiny_k400_f8.py', str(checkpoint),
                       cfg_options={k: v for k, v in SHRINK.items() if k.startswith('model.')})
    pipeline = [dict(step, **dict(scale=(-1, 32)) if step['type'] == 'Resize' else {},
                     **dict(crop_size=32) if step['type'] == 'ThreeCrop' else {})
                for step in model.cfg.test_dataloader.dataset.pipeline]
    sample = Compose(pipeline)(dict(filename=str(videos / 'clip_000.mp4'), label=2, start_index=0, modality='RGB'))
    with torch.no_grad():
        batch = model.data_preprocessor(pseudo_collate([sample]), False)
        scores = model(**batch, mode='predict')[0].pred_score
        views = batch['inputs'][0]  # (12, 3, 8, 32, 32), normalised
        expected = reference_videomamba_forward(state_dict, views).softmax(-1).mean(0)
    assert views.shape == (12, 3, 8, 32, 32)
    assert torch.allclose(scores.double(), expected, atol=1e-5)


def test_get_flops_prints_every_convention_for_images_and_views(capsys):
    from tools.analysis.get_flops import main
    main(['configs/videomamba/videomamba_tiny_in1k.py'])
    out = capsys.readouterr().out
    assert re.search(r'one scan direction.*: 1\.449 G', out)
    assert re.search(r'projections only, no scan \(VideoMamba zoo convention\): +1\.075 G', out)
    main(['configs/mtr_videomamba_k400.py', '--frames', '16', '--cfg-options', 'model.backbone.num_frames=16'])
    out = capsys.readouterr().out
    assert 'input: 16 frames x 224x224  grid: 16x14x14' in out
    assert re.search(r'one scan direction.*: \d+\.\d+ G \(unreduced 23\.07\d G, 40\.\d% fewer\)', out)
    assert re.search(r'both scan directions: +\d+\.\d+ G', out)
    assert re.search(r'VideoMamba zoo convention\): +\d+\.\d+ G \(unreduced 17\.11\d G\)', out)
    assert len(re.findall(r'^ +\d+ +\d+ ', out, re.M)) == 24


def test_missing_videos_and_image_only_outputs_are_named(tmp_path):
    from tools.test import main
    videos, ann_file = make_kinetics_sample(tmp_path / 'k400', labels=(0, ))
    options = [f'test_dataloader.dataset.ann_file={ann_file}', f'test_dataloader.dataset.data_prefix.video={videos}']
    with pytest.raises(ValueError, match='--show-dir draws images .* video models .mmaction2. have none'):
        main(['configs/mtr_videomamba_k400.py', '--show-dir', str(tmp_path / 'show'), '--cfg-options', *options])
    with pytest.raises(FileNotFoundError, match='nowhere does not exist. Set test_dataloader.dataset.data_prefix.video'):
        main(['configs/mtr_videomamba_k400.py', '--cfg-options', options[0],
              f'test_dataloader.dataset.data_prefix.video={tmp_path / "nowhere"}'])
    result = run_script('tools/visualize_tokens.py', 'configs/mtr_videomamba_k400.py', 'demo/data/imagenet/bird.JPEG',
                        '--random-weights', '--out-dir', tmp_path, check=False)
    assert result.returncode != 0 and 'is a video model: token pictures are drawn for image models' in result.stderr


def test_compare_reductions_on_video(tmp_path):
    """Every reducer at one target on the same generated videos and weights: acc/top1 is the metric."""
    import json
    videos, ann_file = make_kinetics_sample(tmp_path / 'k400', labels=(0, 1))
    checkpoint = tmp_path / 'official.pth'
    torch.save(videomamba_state_dict(32, 24, 32, NUM_CLASSES, num_frames=8), checkpoint)
    options = dict(SHRINK, **{'test_dataloader.dataset.ann_file': ann_file,
                              'test_dataloader.dataset.data_prefix.video': videos})
    run_script('tools/analysis/compare_reductions.py', 'configs/mtr_videomamba_k400.py', checkpoint, '--targets', '0.4',
               '--out-dir', tmp_path / 'out', *cfg_options(options), threads=1, timeout=600)
    results = json.loads((tmp_path / 'out' / 'results.json').read_text())
    rows = [r for r in results['rows'] if 'error' not in r]
    assert {r['method'] for r in rows} >= {None, 'mtr', 'tome', 'evit', 'hsa', 'utr', 'pumer', 'random'}
    unreduced = next(r for r in rows if r['method'] is None)
    for row in rows:
        assert 'acc/top1' in row['metrics'] and row['gflops_unreduced'] == unreduced['gflops']
        if row['method'] is not None:
            assert row['gflops'] / unreduced['gflops'] == pytest.approx(0.6, abs=0.01)
