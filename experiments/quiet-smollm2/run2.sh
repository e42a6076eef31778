#!/usr/bin/env bash
# Settings from the environment: STARLING (the binary), MODEL, GSM8K and CSQA (data folders),
# OUT (default runs/quiet-smollm2). Defaults are the paths of the machines this was run on.
# The same as run.sh, with the policy weight 1 instead of the official 1e6 (after run.sh's
# collapse), 40 steps. Base-model evals are shared with run.sh (run it first: it writes the corpus).
set -euo pipefail
mkdir -p "${OUT:-runs/quiet-smollm2}" && cd "${OUT:-runs/quiet-smollm2}"
B=${STARLING:-starling}
M=${MODEL:-/work/shared/models/SmolLM2-135M-Instruct.Q4_1.gguf}
G=${GSM8K:-/work/shared/data/gsm8k}/test.jsonl
C=${CSQA:-/work/shared/data/commonsenseqa}/dev.jsonl
date
$B --device cpu quiet train -m $M --text corpus.jsonl --out train2 --fresh --steps 40 \
    --batch-size 1 --seq-len 64 --lr 1e-5 --policy-weight 1 --save-every 40 > train2.log 2>&1
date
K=train2/checkpoints/step-00000040
$B --device cpu eval gsm8k -m $K --data $G --limit 200 --metric official --samples 4 2>&1 | tail -4 > eval2-after-gsm8k.txt
$B --device cpu eval csqa -m $K --data $C --limit 200 --metric official --samples 4 2>&1 | tail -4 > eval2-after-csqa.txt
date
$B --device cpu quiet analyze -m $K --corpus heldout.jsonl --seq-len 64 --max-windows 48 --thought-temperature 1 > analyze2.txt 2>&1
date
