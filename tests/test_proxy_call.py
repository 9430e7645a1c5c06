"""tools/proxy_call.sh, the GPU calls of a proxy training run, as a dry run on CPU with a tiny Vim: the
first call writes the test files, probes the rate, fixes the schedule length and trains; the last
resumes, finishes and tests; each call leaves its curves and the EMA weights in $OUT."""
import os
import subprocess
import sys
from pathlib import Path

from mmengine.config import Config

from script_runner import REPO
from test_proxy_training import write_config  # skips with it where Fashion-MNIST is missing


def call(phase: str, config: str, work_dir, out, data, expect: int = 0, **env) -> str:
    env = {**os.environ, 'OUT': str(out), 'PROXY_SETUP': '0', 'PROXY_DEVICE': 'cpu', 'PROXY_TEST_IMAGES': '4',
           'PROXY_DATA': str(data), 'TRAIN_UNTIL': '600', 'OMP_NUM_THREADS': '1',
           'PATH': os.path.dirname(sys.executable) + os.pathsep + os.environ['PATH'], **env}  # its python3 is this one
    out.mkdir()
    done = subprocess.run(['bash', 'tools/proxy_call.sh', phase, config, str(work_dir)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == expect, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout + done.stderr


def test_first_and_last_call_train_the_schedule_and_test(tmp_path):
    config = write_config(str(tmp_path), iters=4)  # 8 iterations, each call stops after 4
    cfg = Config.fromfile(config)
    cfg.test_dataloader.dataset.data_root = str(tmp_path / 'data' / 'cls')
    cfg.dump(config)
    work_dir = tmp_path / 'work'

    for stale in range(3):  # probes of an earlier first call on this machine: 1000 s/iteration
        scalars = Path(f'/tmp/probe/2000010{stale}_000000/vis_data/scalars.json')
        scalars.parent.mkdir(parents=True, exist_ok=True)
        scalars.write_text('{"time": 1000.0, "data_time": 0.0, "step": 40}\n')
    first = call('first', config, work_dir, tmp_path / 'out1', tmp_path / 'data')
    assert (tmp_path / 'data' / 'cls' / 'meta' / 'test.txt').read_text().count('\n') == 4
    assert (work_dir / 'N').read_text().strip() == '8'  # the config's 8: the probe leaves time for more
    assert 'trained to iter_4.pth of N=8' in first
    assert (tmp_path / 'out1' / 'work.pth.part1').is_file() and list((tmp_path / 'out1' / 'curves').glob('*.json'))
    assert 'probe: ' in first and 's/iteration' in first

    # a train.py that never exits after its last checkpoint (on the GPU machine it lingered past the call's
    # limit) is ended EXIT_GRACE seconds past its budget, and the call goes on with that checkpoint
    (tmp_path / 'stuck_hooks.py').write_text(
        'import time\nfrom mmengine.hooks import Hook\nfrom mmengine.registry import HOOKS\n\n\n'
        '@HOOKS.register_module()\nclass LingerHook(Hook):\n    def after_train(self, runner):\n'
        '        time.sleep(10 ** 6)\n\n\n'
        '@HOOKS.register_module()\nclass StallHook(Hook):\n    def before_train(self, runner):\n'
        '        time.sleep(10 ** 6)\n')
    stuck = dict(PYTHONPATH=os.pathsep.join([str(tmp_path), os.environ.get('PYTHONPATH', '')]), EXIT_GRACE='2')
    cfg.custom_imports.imports.append('stuck_hooks')
    cfg.custom_hooks.append(dict(type='LingerHook'))
    cfg.dump(config)
    last = call('last', config, work_dir, tmp_path / 'out2', tmp_path / 'data', TRAIN_UNTIL='30', **stuck)
    assert 'train.py was still alive 2 s past its budget: ended (its checkpoint iter_8.pth is complete)' in last
    assert 'trained to iter_8.pth of N=8' in last and 'tested at' in last
    assert 'accuracy/top1' in (tmp_path / 'out2' / 'test.log').read_text()
    assert len(list((tmp_path / 'out2' / 'curves').glob('*.json'))) == 2  # one learning curve per call

    # ended before it saved anything new: the call fails (no stale checkpoint passed off as this call's)
    cfg.custom_hooks[-1] = dict(type='StallHook')
    cfg.dump(config)
    call('resume', config, work_dir, tmp_path / 'out_stalled', tmp_path / 'data', expect=1, TRAIN_UNTIL='4', **stuck)

    # a new schedule from the weights that came back (START_FROM: the parts' common prefix): loaded
    # strictly first (weights that do not fit are named, before any training), train images of a new seed
    cfg.custom_hooks.pop()
    cfg.custom_imports.imports.remove('stuck_hooks')
    cfg.dump(config)
    weights = str(tmp_path / 'out2' / 'work.pth')
    call('first', config, tmp_path / 'again', tmp_path / 'out3', tmp_path / 'data', START_FROM=weights)
    assert f"Load checkpoint from {tmp_path / 'again' / 'start_from.pth'}" in (tmp_path / 'out3' / 'train_first.log').read_text()
    assert (tmp_path / 'again' / 'options').read_text() == 'train_dataloader.dataset.seed=9\n'  # 1 + its 8 iterations
    cfg.model.backbone.depth = 3
    cfg.dump(config)
    wrong = call('first', config, tmp_path / 'deeper', tmp_path / 'out4', tmp_path / 'data', expect=1, START_FROM=weights)
    assert 'checkpoint does not fit' in wrong and 'missing' in wrong and not (tmp_path / 'out4' / 'probe.log').exists()


def test_bad_phase_task_or_config_are_named(tmp_path):
    (tmp_path / 'N').write_text('8\n')  # tmp_path as the work dir of a first call
    for args, env, message in ((['middle', 'c.py', 'w'], {}, 'phase middle: give first, resume or last'),
                               (['first', 'configs/proxy/vim_tiny_fashion_short.py', 'w'], {'PROXY_TASK': 'cls2'},
                                'PROXY_TASK=cls2: give cls, seg or det'),
                               (['first', 'nosuch.py', 'w'], {}, 'nosuch.py: no such config'),
                               (['resume', 'configs/proxy/vim_tiny_fashion_short.py', str(tmp_path / 'gone')], {},
                                'gone/N: no such file; resume and last continue the run of a first call'),
                               (['first', 'configs/proxy/vim_tiny_fashion_short.py', 'w'], {'START_FROM': 'nosuch.pth'},
                                'START_FROM=nosuch.pth: no nosuch.pth.part* files'),
                               (['last', 'configs/proxy/vim_tiny_fashion_short.py', str(tmp_path)],
                                {'START_FROM': 'demo/checkpoints/vim_tiny_fashion.pth'},
                                'only a first call starts from weights')):
        done = subprocess.run(['bash', 'tools/proxy_call.sh', *args], cwd=REPO, capture_output=True, text=True,
                              env=dict(os.environ, OUT=str(tmp_path), **env), timeout=60)
        assert done.returncode == 2 and message in done.stdout, (args, done.stdout, done.stderr)
