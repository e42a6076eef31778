#!/usr/bin/env python3
"""PyTorch's side of bench/gpu.sh: the same model folder, the same measurements as `starling bench`.

Forward (no grad) and forward+backward of the causal-LM loss over the whole vocabulary at B×T,
and greedy generation (P prompt + N new tokens, end-of-text ignored) at several batch sizes,
in fp32 and bf16 (weights cast, eager mode, SDPA attention). Median of --runs after a warm-up.
Writes one JSON file; prints why when torch or a GPU is missing (the caller records the reason).
`--device cpu --threads 2` is the same measurement on the CPU, beside `starling --device cpu bench`.
"""

import argparse
import json
import statistics
import sys
import time


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--prompt-len", type=int, default=32)
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--gen-batches", default="1,16,64")
    p.add_argument("--dtypes", default="float32,bfloat16")
    p.add_argument("--json", required=True)
    p.add_argument("--device", choices=["cuda", "cpu"], default="cuda",
                   help="cpu: the peer of `starling --device cpu bench` on the same machine")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    a = p.parse_args()

    try:
        import torch
        from transformers import AutoModelForCausalLM
    except ImportError as e:
        print(f"torch_bench: skipped, {e}", file=sys.stderr)
        return 3
    if a.device == "cuda" and not torch.cuda.is_available():
        print("torch_bench: skipped, torch sees no CUDA GPU", file=sys.stderr)
        return 3
    if a.threads:
        torch.set_num_threads(a.threads)
    dev = torch.device(a.device)

    def sync():
        if a.device == "cuda":
            torch.cuda.synchronize()
    torch.manual_seed(0)

    def timed(fn, runs):
        fn()
        sync()
        times = []
        for _ in range(max(1, runs)):
            t = time.perf_counter()
            fn()
            sync()
            times.append(time.perf_counter() - t)
        return statistics.median(times)

    report = {
        "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name(0) if a.device == "cuda" else f"cpu, {torch.get_num_threads()} threads",
        "batch": a.batch,
        "seq_len": a.seq_len,
        "runs": a.runs,
        "results": [],
    }
    for name in a.dtypes.split(","):
        dtype = getattr(torch, name)
        model = AutoModelForCausalLM.from_pretrained(a.model, dtype=dtype, attn_implementation="sdpa").to(dev)
        vocab = model.config.vocab_size
        ids = torch.randint(0, vocab, (a.batch, a.seq_len), device=dev)

        model.eval()
        with torch.no_grad():
            fwd = timed(lambda: model(ids).logits, a.runs)

        model.train()

        def fwd_bwd():
            model.zero_grad(set_to_none=True)
            out = model(ids, labels=ids)
            out.loss.backward()

        fb = timed(fwd_bwd, a.runs)
        model.eval()

        gen = []
        for b in [int(x) for x in a.gen_batches.split(",")]:
            prompts = torch.randint(0, vocab, (b, a.prompt_len), device=dev)
            mask = torch.ones_like(prompts)

            def generate():
                with torch.no_grad():
                    model.generate(
                        prompts,
                        attention_mask=mask,
                        max_new_tokens=a.new_tokens,
                        min_new_tokens=a.new_tokens,
                        do_sample=False,
                        pad_token_id=0,
                    )

            secs = timed(generate, min(a.runs, 3))
            gen.append({"batch": b, "tokens_per_s": b * a.new_tokens / secs, "seconds": secs})
        report["results"].append(
            {"dtype": name, "forward_s": fwd, "forward_backward_s": fb, "generation": gen}
        )
        del model
        if a.device == "cuda":
            torch.cuda.empty_cache()
    with open(a.json, "w") as f:
        json.dump(report, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
