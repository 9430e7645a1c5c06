#!/usr/bin/env bash
# One 10-minute GPU call of a proxy training run (docs/proxy_training.md): calls chained back to back on
# one warm machine train one schedule, each resuming where the last stopped.
#
#   [PROXY_TASK=cls|seg|det] bash tools/proxy_call.sh first|resume|last CONFIG WORK_DIR
#
# first   setup, the task's val / test files, a 40-iteration probe that measures s/iteration, then the
#         schedule length N (iterations) that fits LATER_TRAIN more seconds of training after this call
#         (default 800: one full resume call + ~5 min of the last), kept in WORK_DIR/N and handed to the
#         config as $PROXY_MAX_ITERS (the recipes derive the decay's end, EMA and images from it;
#         the classifiers' warm-up too, at most a fifth of N); then trains.
# resume  trains on from WORK_DIR's last checkpoint (no setup: the machine first set up, still warm).
# last    trains on until TRAIN_UNTIL (default 330 s into the call), then tests if the schedule is done.
# START_FROM=PREFIX (first only): the schedule starts from the weights PREFIX.part* (e.g. the demo
#         Vim-T, demo/checkpoints/vim_tiny_fashion.pth): model and EMA begin there (loaded strictly),
#         optimizer and schedule anew, the train images from a new seed.
# Every call ends its training TRAIN_UNTIL seconds into the call (default 520; CallBudgetHook saves
# a resumable checkpoint) and writes under $OUT: the logs, the learning curve of each call so far
# (curves/*.json) and the EMA weights as bf16 parts (tools/proxy_checkpoint.py split --weights-only),
# so a later call that fails still leaves the latest model here. A train.py still alive EXIT_GRACE
# (default 45) seconds past its budget (a deadline) is ended (below); the probe after PROBE_LIMIT (150) s.
# PROXY_SETUP=1 sets up a later call too.
# For a dry run on CPU (tests/test_proxy_call.py): PROXY_SETUP=0 (machine ready), PROXY_DEVICE=cpu,
# PROXY_TEST_IMAGES (default 10,000 cls / 500 dense), PROXY_DATA (default data/fashion_scenes).
set -uo pipefail
cd "$(dirname "$0")/.."
phase=${1:?first, resume or last}; C=${2:?config}; W=${3:?work dir}
task=${PROXY_TASK:-cls}
export PYTHONUNBUFFERED=1
case $phase in first|resume|last) ;; *) echo "phase $phase: give first, resume or last"; exit 2 ;; esac
case $task in cls|seg|det) ;; *) echo "PROXY_TASK=$task: give cls, seg or det"; exit 2 ;; esac
[ -f "$C" ] || { echo "$C: no such config"; exit 2; }

if [ $phase != first ] && [ ! -f $W/N ]; then
  echo "$W/N: no such file; resume and last continue the run of a first call on the same (warm) machine: was it given back? Start again with first"
  exit 2
fi
if [ -n "${START_FROM:-}" ]; then
  [ $phase = first ] || { echo "START_FROM=$START_FROM: only a first call starts from weights (resume and last continue their run)"; exit 2; }
  compgen -G "$START_FROM.part*" > /dev/null || {
    echo "START_FROM=$START_FROM: no $START_FROM.part* files (give the parts' common prefix, e.g. demo/checkpoints/vim_tiny_fashion.pth)"; exit 2; }
fi
# A resumed call runs on the warm machine its first call set up: no setup again (74 s measured)
if [ "${PROXY_SETUP:-$([ $phase = first ] && echo 1 || echo 0)}" = 1 ]; then
  PROXY_TASK=$task bash tools/proxy_gpu_setup.sh > $OUT/setup_$phase.log 2>&1 || { tail -40 $OUT/setup_$phase.log; exit 1; }
  echo "setup done at ${SECONDS}s: $(tail -1 $OUT/setup_$phase.log)"
fi

if [ $phase = first ]; then
  # val / test files on the test garments: cls test 10,000 (validation draws its own); seg, det 100 + 500
  cls=0; seg=0; det=0; declare -n count=$task
  count=${PROXY_TEST_IMAGES:-$([ $task = cls ] && echo 10000 || echo 500)}
  python3 tools/data/make_fashion_scenes.py --out ${PROXY_DATA:-data/fashion_scenes} --cls-train 0 --cls-val 0 \
      --cls-test $cls --cls-folder --seg $seg --seg-val $((seg / 5)) --det $det --det-val $((det / 5)) \
      --device ${PROXY_DEVICE:-cuda} \
      > $OUT/data.log 2>&1 || { tail -20 $OUT/data.log; exit 1; }
  if [ $task != cls ]; then  # the dense recipes start from the Vim-T classifier
    python3 tools/proxy_checkpoint.py join demo/checkpoints/vim_tiny_fashion.pth.part* --out work_dirs/vim_t_cls.pth || exit 1
  fi
  rm -f $W/last_checkpoint $W/options $W/start_from.pth && mkdir -p $W  # a retried first starts its run anew
  if [ -n "${START_FROM:-}" ]; then
    python3 tools/proxy_checkpoint.py join "$START_FROM".part* --out $W/start_from.pth || exit 1
    # load_from only warns about weights that do not fit: loaded here strictly first, each one named.
    # A new seed for the train images (every call of this run): a warm restart draws images the run
    # before did not (it drew images 0 .. iter x batch of seed 0, or of its own seed).
    python3 - $C $W/start_from.pth $W/options <<'PY' || exit 1
import sys
import torch
from mtr_mm.apis import init_model
init_model(sys.argv[1], sys.argv[2])
with open(sys.argv[3], 'w') as f:
    f.write(f"train_dataloader.dataset.seed={1 + torch.load(sys.argv[2], weights_only=False)['meta'].get('iter', 0)}\n")
PY
  fi
  echo "data done at ${SECONDS}s"
  rm -rf /tmp/probe  # a probe of an earlier call (a retried first) would be read below instead of this one
  # the probe, too, may linger after its last iteration (below): ended after PROBE_LIMIT s, its log is what counts
  timeout -k 5 ${PROBE_LIMIT:-150} python3 tools/train.py $C --work-dir /tmp/probe --cfg-options \
      train_cfg.val_interval=100000 custom_hooks.4.iters=40 default_hooks.logger.interval=10 > $OUT/probe.log 2>&1
  rc=$?; [ $rc = 0 ] || [ $rc = 124 ] || [ $rc = 137 ] || { tail -60 $OUT/probe.log; exit 1; }
  python3 - $C $(( ${TRAIN_UNTIL:-520} - SECONDS - 30 + ${LATER_TRAIN:-800} )) > $W/N <<'PY' || exit 1
import glob, json, sys
from mmengine.config import Config
logs = glob.glob('/tmp/probe/*/vis_data/scalars.json')
if not logs:
    sys.exit('the probe logged no iteration within PROBE_LIMIT seconds: see probe.log')
rows = [json.loads(line) for line in open(logs[0])]
seconds_per_iter, data_time = rows[-1]['time'], rows[-1]['data_time']
configured = Config.fromfile(sys.argv[1]).train_cfg.max_iters
n = min(configured, int(int(sys.argv[2]) / seconds_per_iter))
print(n)
print(f'probe: {seconds_per_iter:.3f} s/iteration ({data_time:.3f} waiting for data); {sys.argv[2]} s of training '
      f'-> N = {n} iterations (config: {configured})', file=sys.stderr)
PY
  echo "probe done at ${SECONDS}s"
fi

export PROXY_MAX_ITERS=$(cat $W/N)
[ $phase = first ] && resume="" || resume=--resume
[ $phase = first ] && [ -f $W/start_from.pth ] && load_from=load_from=$W/start_from.pth
until=${TRAIN_UNTIL:-$([ $phase = last ] && echo 330 || echo 520)}
budget=$((until - SECONDS)); [ $budget -gt 0 ] || budget=1
grace=${EXIT_GRACE:-45}
# On the GPU machine (2026-12-03) train.py outlived its last checkpoint by ~85 s (the probe) and until the
# call's limit (each training call) - likely torch's 5 s per worker at exit with persistent, pinned loader
# workers (pytorch issue 81794; the train loaders are no longer persistent). The checkpoint is all a call
# needs: the budget is a deadline on this clock (CallBudgetHook's deadline), and a run still alive `grace`
# seconds past it is ended; its checkpoint is complete once last_checkpoint names it.
before=$(cat $W/last_checkpoint 2>/dev/null)
timeout -k 5 $((budget + grace)) python3 tools/train.py $C --work-dir $W $resume --cfg-options \
    custom_hooks.4.seconds=None custom_hooks.4.deadline=$(( $(date +%s) + budget )) ${load_from:-} \
    $(cat $W/options 2>/dev/null) > $OUT/train_$phase.log 2>&1
rc=$?
if [ $rc != 0 ]; then
  now=$(cat $W/last_checkpoint 2>/dev/null)
  { [ $rc = 124 ] || [ $rc = 137 ]; } && [ -n "$now" ] && [ "$now" != "$before" ] && [ -f "$now" ] \
      || { tail -60 $OUT/train_$phase.log; exit 1; }
  echo "train.py was still alive $grace s past its budget: ended (its checkpoint $(basename $now) is complete)"
fi
grep -E "Iter\((train|val)\)" $OUT/train_$phase.log | tail -3
checkpoint=$(cat $W/last_checkpoint)
echo "trained to $(basename $checkpoint) of N=$PROXY_MAX_ITERS at ${SECONDS}s"
mkdir -p $OUT/curves && for f in $W/2*/vis_data/scalars.json; do cp $f $OUT/curves/$(basename $(dirname $(dirname $f))).json; done
name=$(basename $W)
rm -rf /tmp/parts && mkdir -p /tmp/parts && python3 tools/proxy_checkpoint.py split $checkpoint /tmp/parts/$name --weights-only
# what a call may return: 64 MiB in all (the detector's weights are larger: docs/proxy_training.md)
[ $(du -cm /tmp/parts/$name.pth.part* | tail -1 | cut -f1) -le 56 ] && cp /tmp/parts/$name.pth.part* $OUT/

if [ $phase = last ] && [ "$(basename $checkpoint)" = "iter_$PROXY_MAX_ITERS.pth" ]; then
  python3 tools/test.py $C $checkpoint --work-dir $W/test > $OUT/test.log 2>&1; tail -3 $OUT/test.log
  echo "tested at ${SECONDS}s"
fi
