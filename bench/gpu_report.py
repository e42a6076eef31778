#!/usr/bin/env python3
"""The table of bench/gpu.sh: one column per Starling build × device (its shader compiler named)
and per PyTorch dtype, one row per measurement. Prints Markdown and writes gpu-bench.md and
gpu-bench.json into --dir."""

import argparse
import json
import os
import re
import statistics


def read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def compiler_of(err_text):
    """The compiler from the `device: compiler …` line `starling` prints."""
    for line in (err_text or "").splitlines():
        m = re.match(r"device: compiler (\S+?),", line)
        if m:
            return m.group(1)
    return None


def thought_times(text):
    """Fused and split times from bench-thought's Markdown row."""
    for line in (text or "").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 6 and cells[0].isdigit():
            def secs(c):
                m = re.match(r"([0-9.]+) s$", c)
                return float(m.group(1)) if m else None
            return secs(cells[2]), secs(cells[4])
    return None, None


def quiet_step(jsonl):
    """Median step time, the first (compiling) step left out."""
    if not jsonl:
        return None
    steps = [json.loads(l) for l in jsonl.splitlines() if l.strip().startswith("{")]
    times = [s["step_seconds"] for s in steps if "step_seconds" in s]
    if len(times) > 1:
        times = times[1:]
    return statistics.median(times) if times else None


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--dir", required=True)
    p.add_argument("--status", required=True)
    p.add_argument("--small", type=int, default=0)
    a = p.parse_args()
    d = a.dir
    status = {}
    for line in (read(a.status) or "").splitlines():
        name, _, st = line.partition("\t")
        status[name] = st

    tags = sorted({n.rsplit(".", 1)[0] for n in status if n != "torch"})
    columns = []
    for tag in tags:
        model = json.loads(read(os.path.join(d, f"{tag}.model.json")) or "null")
        compiler = (model or {}).get("compiler") or compiler_of(read(os.path.join(d, f"{tag}.model.err")))
        fused, split = thought_times(read(os.path.join(d, f"{tag}.thought.txt")))
        columns.append({
            "column": f"{tag} ({compiler or '?'})",
            "build": tag.rsplit(".", 1)[0],
            "device": tag.rsplit(".", 1)[1],
            "compiler": compiler,
            "device_name": (model or {}).get("device"),
            "model": model,
            "thought_fused_s": fused,
            "thought_split_s": split,
            "quiet_step_s": quiet_step(read(os.path.join(d, f"{tag}.quiet.jsonl"))),
            "status": {k: status.get(f"{tag}.{k}") for k in ("model", "thought", "quiet")},
        })
    torch = json.loads(read(os.path.join(d, "torch.json")) or "null")
    for r in (torch or {}).get("results", []):
        columns.append({"column": f"PyTorch {torch['torch']} {r['dtype']}", "torch": r})

    def model_value(c, key):
        if "torch" in c:
            return c["torch"].get(key)
        return (c.get("model") or {}).get(key)

    def gen_value(c, b):
        src = c["torch"] if "torch" in c else (c.get("model") or {})
        for g in src.get("generation", []):
            if g["batch"] == b:
                return g["tokens_per_s"]
        return None

    first = next((c["model"] for c in columns if c.get("model")), None) or {}
    batch, seq = first.get("batch", "?"), first.get("seq_len", "?")
    gen_batches = sorted({g["batch"] for c in columns for g in
                          ((c["torch"] if "torch" in c else (c.get("model") or {})).get("generation", []))})
    fmt_s = lambda v: "–" if v is None else f"{v:.4f} s"
    fmt_t = lambda v: "–" if v is None else f"{v:.0f} tok/s"
    rows = [
        (f"forward {batch}×{seq}", lambda c: fmt_s(model_value(c, "forward_s"))),
        (f"forward+backward {batch}×{seq}", lambda c: fmt_s(model_value(c, "forward_backward_s"))),
    ]
    for b in gen_batches:
        rows.append((f"generation, batch {b}", lambda c, b=b: fmt_t(gen_value(c, b))))
    rows += [
        ("Quiet-STaR training step", lambda c: fmt_s(c.get("quiet_step_s"))),
        ("thought attention fused (fwd+bwd)", lambda c: fmt_s(c.get("thought_fused_s"))),
        ("thought attention split (fwd+bwd)", lambda c: fmt_s(c.get("thought_split_s"))),
    ]
    ref = next((c for c in columns if "torch" in c and c["torch"]["dtype"] == "float32"), None)
    if ref:
        def ratio(c, key):
            ours, theirs = model_value(c, key), model_value(ref, key)
            return "–" if "torch" in c or not ours or not theirs else f"{theirs / ours:.2f}×"
        rows.append(("PyTorch fp32 / Starling, forward+backward", lambda c: ratio(c, "forward_backward_s")))

    lines = ["| measurement | " + " | ".join(c["column"] for c in columns) + " |",
             "|---|" + "---|" * len(columns)]
    for label, cell in rows:
        lines.append(f"| {label} | " + " | ".join(cell(c) for c in columns) + " |")
    problems = [f"- {name}: {st}" for name, st in sorted(status.items()) if st != "ok"]
    # bench-thought runs each measurement in a child and reports a crashed child in its table.
    for c in columns:
        if "torch" not in c and c["status"].get("thought") == "ok" and c["thought_fused_s"] is None:
            text = (read(os.path.join(d, f"{c['build']}.{c['device']}.thought.txt")) or "").strip()
            problems.append(f"- {c['build']}.{c['device']}.thought: no time; it printed: {text.splitlines()[-1] if text else 'nothing'}")
    device = next((c.get("device_name") for c in columns if c.get("device_name")), None)
    header = [f"Starling GPU benchmark{' (--small)' if a.small else ''}; device: {device or '?'}"
              + (f"; PyTorch on {torch['gpu']}" if torch else "; PyTorch: not run (see torch status)")]
    text = "\n".join(header + [""] + lines + ([""] + ["Not measured:"] + problems if problems else [])) + "\n"
    print(text)
    with open(os.path.join(d, "gpu-bench.md"), "w") as f:
        f.write(text)
    with open(os.path.join(d, "gpu-bench.json"), "w") as f:
        json.dump({"small": bool(a.small), "columns": columns, "torch": torch, "status": status}, f, indent=2)


if __name__ == "__main__":
    main()
