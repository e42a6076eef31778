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

# Recreates Job $1 from $2 (the old one and its pods gone first) and waits until it is Complete;
# stops the script when it is Failed (a shard out of retries, a refused merge).
run_job() {
  kubectl delete job "$1" --ignore-not-found --cascade=foreground --wait=true
  kubectl apply -f "$2"
  local state
  while :; do
    state=$(kubectl get job "$1" -o jsonpath='{.status.conditions[?(@.status=="True")].type}')
    case " $state " in
      *" Complete "*) break ;;
      *" Failed "*)
        echo "job $1 failed; see: kubectl logs -l job-name=$1 --prefix" >&2
        exit 1 ;;
    esac
    sleep "${STARLING_POLL_SECONDS:-15}"
  done
  kubectl logs -l "job-name=$1" --prefix --tail=5 || true
}

# The shard count the pods are told must be the Indexed Job's completions.
told=$(sed -n 's/^ *STARLING_SHARDS: *"\{0,1\}\([0-9]*\)"\{0,1\}.*/\1/p' "$here/settings.yaml")
completions=$(sed -n 's/^ *completions: *\([0-9]*\).*/\1/p' "$here/shards.yaml")
if [ "$told" != "$completions" ]; then
  echo "settings.yaml says STARLING_SHARDS=$told but shards.yaml runs completions: $completions; make them equal" >&2
  exit 1
fi

kubectl apply -f "$here/settings.yaml"
run_job starling-star-merge "$here/merge.yaml"
for ((i = 1; i <= iterations; i++)); do
  echo "iteration $i: generation"
  run_job starling-star-shards "$here/shards.yaml"
  echo "iteration $i: merge, fine-tune, evaluate"
  run_job starling-star-merge "$here/merge.yaml"
done
