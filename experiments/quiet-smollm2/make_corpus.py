"""Writes the experiment's corpus files into the current folder.

corpus.jsonl: the GSM8K *train* questions with their worked solutions, one {"text": ...} document
per line (Quiet-STaR training). heldout.jsonl: GSM8K *test* items 1000 and later (the per-token
analysis; the evaluation uses the first 200 test items, so neither overlaps what is trained on).
Usage: python3 make_corpus.py GSM8K_DIR   (a folder holding train.jsonl and test.jsonl)
"""
import json
import sys

src = sys.argv[1]


def doc(line):
    r = json.loads(line)
    return json.dumps({"text": "Question: " + r["question"] + "\nAnswer: " + r["answer"]}) + "\n"


with open("corpus.jsonl", "w") as out:
    out.writelines(doc(l) for l in open(f"{src}/train.jsonl"))
with open("heldout.jsonl", "w") as out:
    out.writelines(doc(l) for i, l in enumerate(open(f"{src}/test.jsonl")) if i >= 1000)
