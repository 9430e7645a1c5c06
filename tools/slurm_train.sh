#!/usr/bin/env bash
# train on a slurm cluster through srun and mmengine's slurm launcher.
#   GPUS=16 bash tools/slurm_train.sh PARTITION JOB_NAME CONFIG [extra tools/train.py args]
set -x
PARTITION=$1
JOB_NAME=$2
CONFIG=$3
shift 3
GPUS=${GPUS:-8}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
SRUN_ARGS=${SRUN_ARGS:-""}
PYTHON=${PYTHON:-python}
srun -p ${PARTITION} --job-name=${JOB_NAME} --gres=gpu:${GPUS_PER_NODE} --ntasks=${GPUS} \
    --ntasks-per-node=${GPUS_PER_NODE} --cpus-per-task=${CPUS_PER_TASK} --kill-on-bad-exit=1 ${SRUN_ARGS} \
    $PYTHON -u "$(dirname "$0")/train.py" ${CONFIG} --launcher=slurm "$@"
