"""Generation speed with and without the KV cache, on the classroom shape and a wider one.

Run by hand on a quiet machine (nothing else training):

    python benchmarks/bench_generate.py [--new 256] [--repeats 3] [--threads N] [--json]

Each shape is an untrained Llama (speed does not depend on the weights) given a
32-token prompt; it generates ``--new`` tokens greedily through ``Llama.sample_steps``,
the loop every page and training sample uses, once reading keys and values from the
cache and once recomputing the whole text at every step. The two runs are interleaved
``--repeats`` times and the fastest of each is kept; both must give the same ids.
Prefill (the first step) and decode (the rest) are timed apart.

The context window is raised to 512 on both shapes so that the prompt and 256 new
tokens fit in one window: past the window every step reruns the last context_window
tokens with or without the cache (that is what gives the same ids), so the classroom
preset's own context of 32 would leave the cache nothing to save.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from llama_core.config import ModelConfig
from llama_core.generate import timed_generate
from llama_core.model import Llama
from llama_core.presets import build_configs

PROMPT = 32
CONTEXT = 512
SHAPES = {
    "classroom (4 layers, 128 wide, 4 heads)": build_configs("classroom")[0],
    "wide (8 layers, 512 wide, 8 heads)": ModelConfig(d_model=512, n_layers=8, n_heads=8),
}


def measure(cfg: ModelConfig, new: int, repeats: int) -> dict:
    cfg = ModelConfig(**{**cfg.__dict__, "vocab_size": 65, "context_window": CONTEXT})
    model = Llama(cfg)
    prompt = torch.randint(0, 65, (1, PROMPT), generator=torch.Generator().manual_seed(0))
    timed_generate(model, prompt, 8)  # warm-up: first calls allocate and pick kernels
    best: dict[bool, object] = {}
    for _ in range(repeats):
        for use_cache in (True, False):
            run = timed_generate(model, prompt, new, use_cache=use_cache)
            if use_cache not in best or run.seconds < best[use_cache].seconds:
                best[use_cache] = run
    cached, uncached = best[True], best[False]
    if not torch.equal(cached.ids, uncached.ids):
        raise SystemExit("cached and uncached generation gave different ids")
    return {
        "params": model.num_params(),
        "cached_tokens_per_s": round(cached.tokens_per_s, 1),
        "uncached_tokens_per_s": round(uncached.tokens_per_s, 1),
        "speedup": round(cached.tokens_per_s / uncached.tokens_per_s, 2),
        "cached_prefill_ms": round(cached.prefill_s * 1e3, 2),
        "cached_decode_ms_per_token": round(cached.decode_s / (new - 1) * 1e3, 3),
        "uncached_prefill_ms": round(uncached.prefill_s * 1e3, 2),
        "uncached_decode_ms_per_token": round(uncached.decode_s / (new - 1) * 1e3, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--new", type=int, default=256, help="new tokens (default 256)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not 2 <= args.new <= CONTEXT - PROMPT:
        raise SystemExit(f"--new must be between 2 and {CONTEXT - PROMPT}.")
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    results = {label: measure(cfg, args.new, args.repeats) for label, cfg in SHAPES.items()}
    if args.json:
        print(json.dumps({"new_tokens": args.new, "prompt": PROMPT, "context": CONTEXT,
                          "threads": torch.get_num_threads(), "torch": torch.__version__,
                          "shapes": results}, indent=1))
        return
    print(f"{args.new} new tokens after a {PROMPT}-token prompt, greedy, batch 1, "
          f"context {CONTEXT}; torch {torch.__version__}, {torch.get_num_threads()} threads")
    for label, r in results.items():
        print(f"{label}, {r['params']:,} parameters:\n"
              f"  with the cache    {r['cached_tokens_per_s']:9.1f} tokens/s  (prefill "
              f"{r['cached_prefill_ms']} ms, decode {r['cached_decode_ms_per_token']} ms/token)\n"
              f"  without the cache {r['uncached_tokens_per_s']:9.1f} tokens/s  (first step "
              f"{r['uncached_prefill_ms']} ms, then {r['uncached_decode_ms_per_token']} "
              f"ms/token)\n  the cache is {r['speedup']}x faster")


if __name__ == "__main__":
    main()
