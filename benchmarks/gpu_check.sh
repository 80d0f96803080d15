#!/usr/bin/env bash
# Llama Lab on one CUDA GPU (an H100 or H200) in under 10 minutes:
#   1. the CUDA tests,
#   2. nanogpt-gpu trained on tinyshakespeare to validation loss 1.47 or lower
#      (wall time, tokens/s, MFU against the GPU's dense bf16 peak),
#   3. bf16 against fp32 on one batch (the loss difference),
#   4. generation tokens/s with and without the KV cache,
#   5. the same command under torchrun with one GPU.
#
#   bash benchmarks/gpu_check.sh          # from anywhere; it runs in the repository root
#
# PYTHON names an interpreter with requirements.txt and a CUDA build of torch (default
# .venv/bin/python, else python3); LLAMA_LAB_DATA a folder holding tinyshakespeare.txt
# (default ../shared/data when it has it). Everything goes to $OUT when set, else to
# ./gpu-check/: summary.txt, one log per check, the run store. Each check has its own
# time limit, so the whole script ends within 10 minutes; it exits 1 if any check failed.
set -uo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
[ -z "${PYTHON:-}" ] && [ -x .venv/bin/python ] && PY=.venv/bin/python

if ! "$PY" -c 'import sys, torch; sys.exit(not torch.cuda.is_available())' 2>/dev/null; then
  torch_version=$("$PY" -c 'import torch; print("torch", torch.__version__)' 2>/dev/null \
                  || echo "no torch")
  echo "gpu_check: $PY ($torch_version) sees no CUDA GPU; run this on a machine with an" \
       "NVIDIA GPU and a CUDA build of torch, naming its interpreter in PYTHON." >&2
  exit 1
fi

OUT_DIR=${OUT:-gpu-check}
mkdir -p "$OUT_DIR" && OUT_DIR=$(cd "$OUT_DIR" && pwd)
export LLAMA_LAB_RUNS="$OUT_DIR/runs"   # runs and checkpoints stay out of the checkout
if [ -z "${LLAMA_LAB_DATA:-}" ] && [ -f ../shared/data/tinyshakespeare.txt ]; then
  export LLAMA_LAB_DATA=$(cd ../shared/data && pwd)
fi
SUMMARY="$OUT_DIR/summary.txt"
: > "$SUMMARY"
FAILED=0
say()  { echo "$*" | tee -a "$SUMMARY"; }
fail() { say "FAIL $*"; FAILED=1; }

say "gpu_check $(date -u +%FT%TZ) on $("$PY" -c 'import torch
print(torch.cuda.get_device_name(), "| torch", torch.__version__, "| CUDA", torch.version.cuda)')"

# --- 1. The CUDA tests: the `cuda` marker when pytest.ini registers it, else every test
#        named after CUDA in the files that mention it (they skip or differ with a GPU).
if grep -Eq '^\s+cuda:' pytest.ini; then
  tests=(-m cuda)
else
  tests=(-k cuda $(grep -l cuda tests/test_*.py))
fi
timeout 60 "$PY" -m pytest -q -p no:cacheprovider "${tests[@]}" > "$OUT_DIR/tests.log" 2>&1
code=$?
case $code in
  0) say "ok   CUDA tests: $(tail -n 1 "$OUT_DIR/tests.log")" ;;
  5) say "note CUDA tests: none selected by pytest ${tests[*]}" ;;
  *) fail "CUDA tests (exit $code): $(tail -n 1 "$OUT_DIR/tests.log"); see tests.log" ;;
esac

# --- 2. nanogpt-gpu on tinyshakespeare: the run's JSON, then its speed from the store.
TRAIN_LIMIT=390
timeout $TRAIN_LIMIT "$PY" -m llama_core train --preset nanogpt-gpu --corpus tinyshakespeare \
  --name gpu-check --json > "$OUT_DIR/train.json" 2> "$OUT_DIR/train.log"
code=$?
"$PY" - "$OUT_DIR/train.json" "$code" "$TRAIN_LIMIT" > "$OUT_DIR/train-summary.txt" 2>> "$OUT_DIR/train.log" <<'EOF'
import json, statistics, subprocess, sys
from llama_core.config import model_from_dict
from llama_core.speed import mfu, peak_flops

path, code, limit = sys.argv[1], int(sys.argv[2]), sys.argv[3]
if code == 124:
    sys.exit(f"training did not finish within its {limit} s limit; see train.log")
lines = open(path).read().split("\n")
result = json.loads(next((l for l in reversed(lines) if l.strip()), "{}"))
if code != 0 or result.get("status") != "finished":
    sys.exit(f"train exited {code} with status {result.get('status')}; see train.log")
shown = subprocess.run([sys.executable, "-m", "llama_core", "runs", "show", result["run_id"],
                        "--json"], capture_output=True, text=True, check=True)
run = json.loads(shown.stdout)
cfg = model_from_dict(run["model_config"])
rates = [m["tokens_per_s"] for m in run["metrics"] if m.get("tokens_per_s")]
training_rate = statistics.median(rates) if rates else result["tokens_per_s"]
peak, basis = peak_flops(result["device"])
for label, rate in (("whole run", result["tokens_per_s"]), ("training only", training_rate)):
    share = mfu(rate, cfg, result["device"])
    print(f"{label}: {rate:,.0f} tokens/s, MFU "
          f"{'unknown' if share is None else f'{share:.1%}'} of {peak / 1e12:.0f} TFLOP/s ({basis})")
loss = result["final_val_loss"]
print(f"val {loss:.4f} after {result['steps']} steps in {result['wall_s']:.0f} s")
sys.exit(0 if loss <= 1.47 else 3)
EOF
code=$?
case $code in
  0) say "ok   nanogpt-gpu: $(tr '\n' ';' < "$OUT_DIR/train-summary.txt")" ;;
  3) fail "nanogpt-gpu missed validation 1.47: $(tr '\n' ';' < "$OUT_DIR/train-summary.txt")" ;;
  *) fail "nanogpt-gpu: $(tail -n 1 "$OUT_DIR/train.log")" ;;
esac

# --- 3 and 4. bf16 against fp32 on one validation batch, and generation speed, on the
#              trained checkpoint (a freshly initialised model when training failed).
timeout 60 "$PY" - "$OUT_DIR/train.json" > "$OUT_DIR/bf16-generate.txt" \
  2> "$OUT_DIR/bf16-generate.log" <<'EOF'
import json, os, sys, time
from pathlib import Path
import torch
import torch.nn.functional as F
from llama_core import load_checkpoint
from llama_core.corpora import load_corpus
from llama_core.model import Llama, eval_mode
from llama_core.presets import build_configs

try:  # the run's checkpoint is named relative to its runs folder
    saved = json.loads(open(sys.argv[1]).read().strip().split("\n")[-1])["checkpoint"]
except (ValueError, KeyError, IndexError):
    saved = None
if saved:
    model, _, _ = load_checkpoint(Path(os.environ["LLAMA_LAB_RUNS"]) / saved, device="cuda")
    which = "trained checkpoint"
else:
    model_cfg, _ = build_configs("nanogpt-gpu")
    model, which = Llama(model_cfg).cuda().eval(), "fresh model: training left no checkpoint"
corpus = load_corpus("tinyshakespeare")
x, y = (t.cuda() for t in corpus.fixed_batches("val", 1, 64, model.cfg.context_window)[0])
with torch.no_grad(), eval_mode(model):
    logits32 = model(x).float()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        logits16 = model(x).float()
fp32, bf16 = (F.cross_entropy(l.flatten(0, 1), y.flatten()).item() for l in (logits32, logits16))
print(f"bf16 loss {bf16:.5f} vs fp32 {fp32:.5f} on one batch of 64 ({which}): difference "
      f"{abs(bf16 - fp32):.5f}, largest logit difference "
      f"{(logits16 - logits32).abs().max().item():.4f}")

prompt = torch.zeros((1, 1), dtype=torch.long, device="cuda")
new = min(500, model.cfg.context_window - 1)  # inside the window, where the cache gains
rates = {}
with eval_mode(model):
    for use_cache in (True, False):
        generator = torch.Generator().manual_seed(0)
        model.generate(prompt, 20, 1.0, None, generator, use_cache=use_cache)  # warm-up
        torch.cuda.synchronize()
        start = time.perf_counter()
        model.generate(prompt, new, 1.0, None, generator, use_cache=use_cache)
        torch.cuda.synchronize()
        rates[use_cache] = new / (time.perf_counter() - start)
print(f"generation (batch 1, {new} tokens): {rates[True]:,.0f} tokens/s with the KV cache, "
      f"{rates[False]:,.0f} without ({rates[True] / rates[False]:.2f}x)")
sys.exit(0 if abs(bf16 - fp32) < 0.02 else 3)
EOF
code=$?
case $code in
  0) say "ok   $(sed -n 1p "$OUT_DIR/bf16-generate.txt")"
     say "ok   $(sed -n 2p "$OUT_DIR/bf16-generate.txt")" ;;
  3) fail "bf16 differs from fp32 by 0.02 or more: $(sed -n 1p "$OUT_DIR/bf16-generate.txt")"
     say "ok   $(sed -n 2p "$OUT_DIR/bf16-generate.txt")" ;;
  124) fail "bf16/generation check: over its 60 s limit; see bf16-generate.log" ;;
  *) fail "bf16/generation check (exit $code): $(tail -n 1 "$OUT_DIR/bf16-generate.log")" ;;
esac

# --- 5. torchrun with one GPU: the distributed path end to end, 200 steps.
timeout 60 "$PY" -m torch.distributed.run --standalone --nproc_per_node 1 -m llama_core \
  train --preset nanogpt-gpu --corpus tinyshakespeare --steps 200 --name gpu-check-torchrun \
  --json > "$OUT_DIR/torchrun.json" 2> "$OUT_DIR/torchrun.log"
code=$?
line=$(grep -v '^\s*$' "$OUT_DIR/torchrun.json" | tail -n 1)
if [ $code -eq 0 ] && echo "$line" | grep -q '"status": "finished"'; then
  say "ok   torchrun, 1 GPU: $line"
else
  fail "torchrun, 1 GPU (exit $code): $(tail -n 1 "$OUT_DIR/torchrun.log")"
fi

[ $FAILED -eq 0 ] && say "all checks passed; logs in $OUT_DIR" \
                  || say "some checks failed; logs in $OUT_DIR"
exit $FAILED
