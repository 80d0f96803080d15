"""Training speed at the nanogpt-cpu shape, beside the machine's matrix-multiply rate.

Run by hand on a quiet machine (nothing else training):

    LLAMA_LAB_DATA=../shared/data python benchmarks/bench_speed.py [--steps 200] [--compile]

For each variant it trains `--steps` optimizer steps on tinyshakespeare (the built-in
corpus when that file is missing) through llama_core.training, the code path every run
uses, and reports tokens/s measured after a warm-up, plus the achieved model FLOP/s as a
fraction of the measured fp32 matmul rate. For a ratio to nanoGPT, use vs_nanogpt.py,
which runs both side by side.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from llama_core.presets import build_configs
from llama_core.corpora import load_corpus
from llama_core.inspect import flops_per_token
from llama_core.speed import measured_matmul_flops
from llama_core.training import train

VARIANTS = {
    "llama (rmsnorm, rope, swiglu)": {},
    "gpt-style (layernorm, learned, gelu)": {"norm": "layernorm", "pos": "learned",
                                             "ffn": "gelu"},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--compile", action="store_true", help="also time torch.compile")
    parser.add_argument("--corpus", default=None)
    args = parser.parse_args()

    corpus_name = args.corpus
    if corpus_name is None:
        try:
            load_corpus("tinyshakespeare")
            corpus_name = "tinyshakespeare"
        except Exception:
            corpus_name = "shakespeare"
    corpus = load_corpus(corpus_name)
    peak = measured_matmul_flops(n=1024, repeats=20) / 1e9
    print(f"corpus {corpus_name}; torch {torch.__version__}; {torch.get_num_threads()} "
          f"threads; fp32 matmul {peak:.0f} GFLOP/s")
    results = []
    for compiled in ([False, True] if args.compile else [False]):
        for label, overrides in VARIANTS.items():
            model_cfg, train_cfg = build_configs(
                "nanogpt-cpu", dict(overrides, steps=args.steps + args.warmup,
                                    eval_interval=args.steps + args.warmup, eval_batches=1, sample_chars=0,
                                    corpus=corpus_name, device="cpu", compile=compiled,
                                    warmup_steps=10))
            marks = {}

            def on_progress(state):
                marks.setdefault("first", None)
                if state["step"] >= args.warmup and "warm" not in marks:
                    marks["warm"] = (state["step"], state["seconds"])
                marks["last"] = (state["step"], state["seconds"])

            result = train(model_cfg, train_cfg, corpus, on_progress=on_progress)
            s0, t0 = marks.get("warm", (0, 0.0))
            s1, t1 = result.steps, result.wall_s
            tok_s = (s1 - s0) * train_cfg.batch_size * model_cfg.context_window / (t1 - t0)
            flops = flops_per_token(model_cfg)["training_flops_per_token"]
            row = {"variant": label, "compiled": compiled, "tokens_per_s": round(tok_s),
                   "params": result.params, "model_gflops": round(tok_s * flops / 1e9, 1),
                   "fraction_of_matmul_peak": round(tok_s * flops / 1e9 / peak, 3),
                   "compile_s": result.compile_s}
            results.append(row)
            print(json.dumps(row))


if __name__ == "__main__":
    main()
