#!/usr/bin/env bash
# Runs a sharded STaR run on Kubernetes with kubectl (current context and namespace): applies the
# settings and volume, then the merge Job (the start), then per iteration the Indexed shard Job
# and the merge Job, each waited for. Stopped part-way, it can be run again: finished work is
# never redone (a shard or merge of finished work says "nothing to do").
#
#   deploy/k8s/run.sh 5          # ITERATIONS, as in STAR_ARGS's --iterations
#
# Edit settings.yaml first (run folder, model, task, --iterations, STARLING_SHARDS) and
# shards.yaml's completions/parallelism (= STARLING_SHARDS).
set -euo pipefail

iterations=${1:?usage: run.sh ITERATIONS}
here=$(cd "$(dirname "$0")" && pwd)
timeout=${STARLING_JOB_TIMEOUT:-48h}

# Recreates Job $1 from $2 and waits for it to complete (or fail).
run_job() {
  kubectl delete job "$1" --ignore-not-found --wait=true
  kubectl apply -f "$2"
  if ! kubectl wait --for=condition=complete --timeout="$timeout" "job/$1"; then
    echo "job $1 did not complete; see: kubectl logs -l job-name=$1 --prefix" >&2
    exit 1
  fi
  kubectl logs -l "job-name=$1" --prefix --tail=5 || true
}

kubectl apply -f "$here/settings.yaml"
run_job starling-star-merge "$here/merge.yaml"
for ((i = 1; i <= iterations; i++)); do
  echo "iteration $i: generation"
  run_job starling-star-shards "$here/shards.yaml"
  echo "iteration $i: merge, fine-tune, evaluate"
  run_job starling-star-merge "$here/merge.yaml"
done
