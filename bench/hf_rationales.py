#!/usr/bin/env python3
"""The peer side of `starling bench-rationales`: Hugging Face transformers `generate` on the same
model folder (`starling convert` writes it), the same tokenized prompts, greedy, the same token
budget and stop strings (`bench-rationales --prompts-out FILE` writes them, with Starling's own
generated ids). Runs each batch size over all questions and prints questions/s beside the
Starling figure from the same file, plus how many questions got exactly Starling's tokens.

    starling convert -m SmolLM2-135M-Instruct.Q4_1.gguf --out /tmp/smollm2-f32
    starling bench-rationales --task csqa -m ... --prompts-out /tmp/prompts.json
    python3 bench/hf_rationales.py --model /tmp/smollm2-f32 --prompts /tmp/prompts.json
"""

import argparse
import json
import sys
import time


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True, help="a Hugging Face folder (float32 weights)")
    p.add_argument("--prompts", required=True, help="the JSON written by bench-rationales --prompts-out")
    p.add_argument("--batches", default="1,8,32")
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as e:
        print(f"hf_rationales: needs torch and transformers ({e}); pip install torch transformers", file=sys.stderr)
        return 3
    torch.set_num_threads(a.threads)
    spec = json.load(open(a.prompts))
    questions = spec["questions"]
    tok = AutoTokenizer.from_pretrained(a.model)
    model = AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.float32).eval()
    pad = tok.pad_token_id if tok.pad_token_id is not None else spec["eos_ids"][0]

    def run(batch):
        out = []
        longest = max(len(q["prompt"]) for q in batch)
        ids = torch.tensor([[pad] * (longest - len(q["prompt"])) + q["prompt"] for q in batch])
        mask = torch.tensor([[0] * (longest - len(q["prompt"])) + [1] * len(q["prompt"]) for q in batch])
        with torch.no_grad():
            gen = model.generate(
                input_ids=ids,
                attention_mask=mask,
                do_sample=False,
                max_new_tokens=spec["max_new_tokens"],
                stop_strings=spec["stop_strings"],
                tokenizer=tok,
                eos_token_id=spec["eos_ids"],
                pad_token_id=pad,
            )
        for row in gen[:, longest:].tolist():
            kept = []
            for t in row:
                if t in spec["eos_ids"]:
                    break
                kept.append(t)
            out.append(kept)
        return out

    run(questions[:2])  # warm-up
    print(f"transformers generate, {len(questions)} questions, greedy, {a.threads} threads, torch {torch.__version__}")
    print("| batch | questions/s | seconds | exactly Starling's tokens |")
    print("|---|---|---|---|")
    best = 0.0
    for b in [int(x) for x in a.batches.split(",") if x]:
        t = time.perf_counter()
        outs = []
        for i in range(0, len(questions), b):
            outs.extend(run(questions[i : i + b]))
        secs = time.perf_counter() - t
        qps = len(questions) / secs
        best = max(best, qps)
        # Starling's ids end at the token that completes a stop string; transformers' may run on
        # to the end of the batch, so compare Starling's length.
        same = sum(o[: len(q["starling"])] == q["starling"] for o, q in zip(outs, questions))
        print(f"| {b} | {qps:.2f} | {secs:.1f} | {same} of {len(questions)} |")
    s = spec.get("starling_questions_per_s")
    if s:
        print(f"Starling ({spec.get('starling_config', '')}): {s:.2f} questions/s = {s / best:.2f}× transformers' best")
    return 0


if __name__ == "__main__":
    sys.exit(main())
