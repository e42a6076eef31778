#!/usr/bin/env bash
# Settings from the environment: STARLING (the binary), MODEL, GSM8K and CSQA (data folders),
# OUT (default runs/quiet-smollm2). Defaults are the paths of the machines this was run on.
# Quiet-STaR on SmolLM2-135M-Instruct, 2 CPU cores: the paper's metric before and after, and where
# thoughts help on held-out text. Corpus: GSM8K train solutions; eval: first 200 GSM8K test and
# CommonsenseQA dev questions; analysis: GSM8K test items 1000+ (never in the eval or training).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
mkdir -p "${OUT:-runs/quiet-smollm2}" && cd "${OUT:-runs/quiet-smollm2}"
python3 "$HERE/make_corpus.py" "${GSM8K:-/work/shared/data/gsm8k}"
B=${STARLING:-starling}
M=${MODEL:-/work/shared/models/SmolLM2-135M-Instruct.Q4_1.gguf}
G=${GSM8K:-/work/shared/data/gsm8k}/test.jsonl
C=${CSQA:-/work/shared/data/commonsenseqa}/dev.jsonl
date
$B --device cpu eval gsm8k -m $M --data $G --limit 200 --metric official --samples 4 2>&1 | grep -v "^\s*$" | tail -4 > eval-base-gsm8k.txt
$B --device cpu eval csqa -m $M --data $C --limit 200 --metric official --samples 4 2>&1 | tail -4 > eval-base-csqa.txt
date
/usr/bin/time -v $B --device cpu quiet train -m $M --text corpus.jsonl --out train --fresh --steps 100 \
    --batch-size 1 --seq-len 64 --lr 1e-5 --save-every 50 > train.log 2>&1
date
K=train/checkpoints/step-00000100
$B --device cpu eval gsm8k -m $K --data $G --limit 200 --metric official --samples 4 2>&1 | tail -4 > eval-after-gsm8k.txt
$B --device cpu eval csqa -m $K --data $C --limit 200 --metric official --samples 4 2>&1 | tail -4 > eval-after-csqa.txt
date
$B --device cpu quiet analyze -m $K --corpus heldout.jsonl --seq-len 64 --max-windows 96 --thought-temperature 1 > analyze.txt 2>&1
date
