#!/usr/bin/env bash
# Submits a whole sharded STaR run to Slurm and returns: the start (the base model's evaluation),
# then per iteration a job array of SHARDS generation tasks and a merge job (fine-tune, evaluate),
# each job waiting for the one before to succeed (afterok; the jobs after a failure are cancelled,
# --kill-on-invalid-dep). After a failed array task, resubmit it alone — it continues from its last
# whole batch —
#   STAR_RUN=… STAR_ARGS="… --iterations ITERATIONS" STARLING_SHARDS=SHARDS \
#     sbatch --export=ALL --array=K deploy/slurm/star.sbatch shard
# then this script again with the same arguments: finished work is never redone, and jobs past
# the run's end say there is nothing to do.
#
#   STAR_RUN=/shared/runs/csqa STAR_ARGS="-m /models/smollm2 --task csqa --train /data/train.jsonl --dev /data/dev.jsonl" \
#     deploy/slurm/submit.sh 8 5        # 8 shards per iteration, 5 iterations
#
# Extra sbatch options (partition, account, GPUs) go in SBATCH_OPTIONS, e.g. "--partition=gpu
# --gres=gpu:1". SBATCH names the sbatch command (default: sbatch).
set -euo pipefail

shards=${1:?usage: submit.sh SHARDS ITERATIONS}
iterations=${2:?usage: submit.sh SHARDS ITERATIONS}
: "${STAR_RUN:?set STAR_RUN to the run folder (on a filesystem shared by every node)}"
here=$(cd "$(dirname "$0")" && pwd)
export STAR_ARGS="${STAR_ARGS:-} --iterations $iterations"
# The shard count, for every task and for a task resubmitted alone (an array of one).
export STARLING_SHARDS=$shards
read -r -a options <<< "${SBATCH_OPTIONS:-}"

# Submits one job; prints its id. (${a[@]+"${a[@]}"}: an empty array under set -u, old bash too.)
submit() {
  local id
  id=$(${SBATCH:-sbatch} --parsable --export=ALL ${options[@]+"${options[@]}"} "$@") || return 1
  id=${id%%;*}  # --parsable prints "id" or "id;cluster"
  if ! [[ $id =~ ^[0-9]+$ ]]; then
    echo "submit.sh: sbatch gave no job id (it printed '$id')" >&2
    return 1
  fi
  echo "$id"
}

job=$(submit "$here/star.sbatch" merge)
echo "start (base model evaluation): job $job"
for ((i = 1; i <= iterations; i++)); do
  job=$(submit --dependency="afterok:$job" --kill-on-invalid-dep=yes --array="0-$((shards - 1))" "$here/star.sbatch" shard)
  echo "iteration $i: generation, $shards shards: job array $job"
  job=$(submit --dependency="afterok:$job" --kill-on-invalid-dep=yes "$here/star.sbatch" merge)
  echo "iteration $i: merge, fine-tune, evaluate: job $job"
done
echo "the run's report will be in $STAR_RUN/report.md"
