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
# START_FROM=PREFIX (first only): the schedule starts from the weights PREFIX.part* (an earlier call's
#         $OUT/NAME.pth parts, carried in .gpu/): model and EMA begin there, optimizer and schedule anew.
# Every call ends its training TRAIN_UNTIL seconds into the call (default 520; CallBudgetHook saves
# a resumable checkpoint) and writes under $OUT: the logs, the learning curve of each call so far
# (curves/*.json) and the EMA weights as bf16 parts (tools/proxy_checkpoint.py split --weights-only),
# so a later call that fails still leaves the latest model here. A train.py still alive EXIT_GRACE
# (default 45) seconds after its budget is ended (below).
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
  if [ -n "${START_FROM:-}" ]; then  # a new schedule from earlier weights: START_FROM.part* (weights-only parts)
    mkdir -p $W && python3 tools/proxy_checkpoint.py join $START_FROM.part* --out $W/start_from.pth || exit 1
    start_from=load_from=$W/start_from.pth
  fi
  echo "data done at ${SECONDS}s"
  rm -rf /tmp/probe  # a probe of an earlier call (a retried first) would be read below instead of this one
  python3 tools/train.py $C --work-dir /tmp/probe --cfg-options train_cfg.val_interval=100000 \
      custom_hooks.4.iters=40 default_hooks.logger.interval=10 > $OUT/probe.log 2>&1 || { tail -60 $OUT/probe.log; exit 1; }
  mkdir -p $W
  python3 - $C $(( ${TRAIN_UNTIL:-520} - SECONDS - 30 + ${LATER_TRAIN:-800} )) > $W/N <<'PY' || exit 1
import glob, json, sys
from mmengine.config import Config
rows = [json.loads(line) for line in open(glob.glob('/tmp/probe/*/vis_data/scalars.json')[0])]
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
until=${TRAIN_UNTIL:-$([ $phase = last ] && echo 330 || echo 520)}
# On the GPU machine (2026-12-03) train.py outlived its last checkpoint by ~70 s (the probe) and by 80 s until
# the call's limit (each training call) - likely torch's 5 s per worker at exit with persistent, pinned loader
# workers (pytorch issue 81794; the train loader is no longer persistent). The checkpoint is all a call needs:
# a run alive EXIT_GRACE seconds past its budget is ended; its checkpoint is complete once last_checkpoint names it.
before=$(cat $W/last_checkpoint 2>/dev/null)
timeout -k 5 $((until - SECONDS + ${EXIT_GRACE:-45})) python3 tools/train.py $C --work-dir $W $resume \
    --cfg-options custom_hooks.4.seconds=$((until - SECONDS)) ${start_from:-} > $OUT/train_$phase.log 2>&1
rc=$?
if [ $rc != 0 ]; then
  { [ $rc = 124 ] || [ $rc = 137 ]; } && [ "$(cat $W/last_checkpoint 2>/dev/null)" != "$before" ] \
      || { tail -60 $OUT/train_$phase.log; exit 1; }
  echo "train.py had not exited ${EXIT_GRACE:-45} s after its budget: ended (its checkpoint is complete)"
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
