"""Llama Lab beside nanoGPT on the same CPU: the cost of one training step, and the
whole CPU recipe from start to exit. It prints ratios, so run it on a quiet machine
(nothing else training or testing): a busy core makes either side look slow.

    git -C /path/to/nanoGPT/.git archive HEAD | tar -x -C /tmp/nanogpt   # any work tree
    LLAMA_LAB_DATA=../shared/data python benchmarks/vs_nanogpt.py /tmp/nanogpt
    python benchmarks/vs_nanogpt.py /tmp/nanogpt --threads 2 --timed 200 --repeats 3 --json
    python benchmarks/vs_nanogpt.py /tmp/nanogpt --timed 20 --warmup 5 --repeats 1 --steps 30
    python benchmarks/vs_nanogpt.py /tmp/nanogpt --compile ours   # our models compiled

Step benchmark, in this process: nanoGPT's own model.py GPT (bias=False, dropout 0,
AdamW from its configure_optimizers), Llama Lab's full Llama and Llama Lab GPT-style
(layernorm, learned positions, GELU; AdamW from llama_core.training.make_optimizer), all
at the nanogpt-cpu preset's shape and hyperparameters, gradients clipped at 1.0. Steps
are interleaved (the model that goes first rotates), so the machine's noise hits all
three alike, and every model trains on the same batch at each step. A step is forward,
backward, clip and optimizer step; the median after ``--warmup`` untimed steps is
compared with nanoGPT's as a tokens/s ratio (above 1: faster than nanoGPT).

Whole recipe: nanoGPT's train.py with config/train_shakespeare_char.py at the CPU shape,
run in a temporary copy of the checkout whose data/shakespeare_char/ is written here the
way its prepare.py writes it (prepare.py downloads, and the machine may be offline),
against ``python -m llama_core train --preset nanogpt-cpu``. Both are whole processes
timed from start to exit (start-up, evaluations and checkpoints included), run A, B,
A, B ... for ``--repeats``, each with OMP_NUM_THREADS set to ``--threads``; the table
gives the median wall seconds, the final validation loss of each and the time ratio.

``--compile ours`` sends Llama Lab's models through torch.compile in both parts (the
train setting compile=true; its compile time counts in the whole recipe) while nanoGPT
stays eager, as its README's CPU recipe runs it (--compile=False); ``--compile all``
compiles nanoGPT's GPT too.

Both parts train on tinyshakespeare (LLAMA_LAB_DATA or data/ must hold
tinyshakespeare.txt), or on the built-in Shakespeare corpus when it is missing.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib.util
import json
import os
import pickle
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from llama_core.corpora import load_corpus  # noqa: E402
from llama_core.errors import UserError  # noqa: E402
from llama_core.model import Llama  # noqa: E402
from llama_core.presets import build_configs  # noqa: E402
from llama_core.training import make_optimizer  # noqa: E402

PRESET = "nanogpt-cpu"
GPT_STYLE = {"norm": "layernorm", "pos": "learned", "ffn": "gelu"}
NANOGPT_FILES = ("model.py", "train.py", "configurator.py", "config/train_shakespeare_char.py")
NANOGPT_EVAL_LINE = re.compile(r"step (\d+): train loss ([\d.]+), val loss ([\d.]+)")
NANOGPT_EVAL_INTERVAL = 250  # config/train_shakespeare_char.py's


class BenchmarkInputError(UserError):
    """A flag or path this benchmark cannot work with."""


class RecipeFailed(Exception):
    """A recipe process failed; the message names the log that says why."""


# --- What both parts share -----------------------------------------------------------

def nanogpt_checkout(path: str) -> Path:
    """The nanoGPT work tree named on the command line, checked before anything runs."""
    folder = Path(path).expanduser().resolve()
    missing = [name for name in NANOGPT_FILES if not (folder / name).is_file()]
    if missing:
        raise BenchmarkInputError(
            f"{folder} is not a nanoGPT work tree (it lacks {', '.join(missing)}); pass the "
            f"folder of a checkout, e.g. one made with `git archive HEAD | tar -x`.")
    return folder


def choose_corpus() -> tuple[str, object]:
    """tinyshakespeare, nanoGPT's own text, or the built-in corpus when it is missing."""
    try:
        return "tinyshakespeare", load_corpus("tinyshakespeare")
    except UserError as e:
        print(f"note: {e} Using the built-in shakespeare corpus instead.", file=sys.stderr)
        return "shakespeare", load_corpus("shakespeare")


def preset_configs(overrides: dict | None = None, vocab_size: int | None = None):
    """The nanogpt-cpu model and training configs on the CPU, with the corpus's vocabulary."""
    model_cfg, train_cfg = build_configs(PRESET, dict(overrides or {}, device="cpu"))
    if vocab_size is not None:
        model_cfg = dataclasses.replace(model_cfg, vocab_size=vocab_size)
    return model_cfg, train_cfg


# --- Step benchmark -------------------------------------------------------------------

def load_nanogpt_model_module(checkout: Path):
    """nanoGPT's model.py as a module of its own name (registered before it runs: its
    dataclass looks itself up in sys.modules)."""
    spec = importlib.util.spec_from_file_location("nanogpt_model", checkout / "model.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def nanogpt_step(checkout: Path, vocab_size: int, compile: bool = False):
    """One nanoGPT training step as its train.py takes it on a CPU (fp32, no scaler);
    with ``compile``, through torch.compile as its train.py does with --compile=True."""
    model_cfg, train_cfg = preset_configs(vocab_size=vocab_size)
    nano = load_nanogpt_model_module(checkout)
    config = nano.GPTConfig(block_size=model_cfg.context_window, vocab_size=vocab_size,
                            n_layer=model_cfg.n_layers, n_head=model_cfg.n_heads,
                            n_embd=model_cfg.d_model, dropout=0.0, bias=False)
    with contextlib.redirect_stdout(sys.stderr):  # it prints sizes; keep --json clean
        model = nano.GPT(config)
        optimizer = model.configure_optimizers(train_cfg.weight_decay, train_cfg.lr,
                                               (train_cfg.beta1, train_cfg.beta2), "cpu")

    forward = torch.compile(model) if compile else model

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        _, loss = forward(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), train_cfg.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step, model.get_num_params(non_embedding=False)


def llama_lab_step(overrides: dict, vocab_size: int, compile: bool = False):
    """One Llama Lab training step as llama_core.training takes it on a CPU (with
    ``compile``, as with the train setting compile=true)."""
    model_cfg, train_cfg = preset_configs(overrides, vocab_size)
    model = Llama(model_cfg, seed=train_cfg.seed)
    optimizer = make_optimizer(model, train_cfg, torch.device("cpu"))
    forward = torch.compile(model) if compile else model

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        logits = forward(x)
        loss = F.cross_entropy(logits.float().flatten(0, 1), y.flatten())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), train_cfg.grad_clip)
        optimizer.step()

    return step, model.num_params()


def step_benchmark(checkout: Path, corpus, timed: int, warmup: int,
                   compile: str = "none") -> dict:
    """Median step time of the three models, interleaved step by step on shared batches.
    ``compile``: "none", "ours" (our two models through torch.compile, nanoGPT eager as
    its CPU recipe runs) or "all"; the warm-up steps compile."""
    model_cfg, train_cfg = preset_configs(vocab_size=corpus.vocab_size)
    batch, context = train_cfg.batch_size, model_cfg.context_window
    models = {
        "nanoGPT GPT (model.py)": nanogpt_step(checkout, corpus.vocab_size,
                                               compile == "all"),
        "Llama Lab Llama": llama_lab_step({}, corpus.vocab_size, compile != "none"),
        "Llama Lab GPT-style": llama_lab_step(GPT_STYLE, corpus.vocab_size,
                                              compile != "none"),
    }
    names = list(models)
    seconds: dict[str, list[float]] = {name: [] for name in names}
    generator = torch.Generator().manual_seed(train_cfg.seed)
    for i in range(warmup + timed):
        x, y = corpus.batch("train", batch, context, generator)
        first = i % len(names)
        for name in names[first:] + names[:first]:
            start = time.perf_counter()
            models[name][0](x, y)
            if i >= warmup:
                seconds[name].append(time.perf_counter() - start)
    reference = statistics.median(seconds[names[0]])
    rows = []
    for name in names:
        median = statistics.median(seconds[name])
        rows.append({"model": name, "params": models[name][1],
                     "median_ms": round(median * 1e3, 3),
                     "tokens_per_s": round(batch * context / median, 1),
                     "tokens_per_s_vs_nanogpt": round(reference / median, 3)})
    return {"timed_steps": timed, "warmup_steps": warmup, "compile": compile,
            "batch_size": batch, "context": context, "models": rows}


# --- Whole recipe ---------------------------------------------------------------------

def prepare_shakespeare_char(text: str, folder: Path) -> None:
    """data/shakespeare_char/ exactly as nanoGPT's prepare.py writes it: sorted
    characters, uint16 train.bin and val.bin split 90/10 by position, meta.pkl."""
    chars = sorted(set(text))
    stoi = {ch: i for i, ch in enumerate(chars)}
    itos = {i: ch for i, ch in enumerate(chars)}
    n = len(text)
    folder.mkdir(parents=True, exist_ok=True)
    for name, part in (("train", text[:int(n * 0.9)]), ("val", text[int(n * 0.9):])):
        np.array([stoi[c] for c in part], dtype=np.uint16).tofile(folder / f"{name}.bin")
    with open(folder / "meta.pkl", "wb") as f:
        pickle.dump({"vocab_size": len(chars), "itos": itos, "stoi": stoi}, f)


def recipe_commands(steps: int, corpus_name: str,
                    compile: str = "none") -> dict[str, list[str]]:
    """The two command lines, at the same shape, steps and evaluation points (``compile``
    as in step_benchmark)."""
    interval = NANOGPT_EVAL_INTERVAL if steps % NANOGPT_EVAL_INTERVAL == 0 else steps
    nanogpt = [sys.executable, "train.py", "config/train_shakespeare_char.py",
               "--device=cpu", f"--compile={compile == 'all'}", "--eval_iters=20",
               "--log_interval=1", "--block_size=64", "--batch_size=12", "--n_layer=4", "--n_head=4",
               "--n_embd=128", f"--max_iters={steps}", f"--lr_decay_iters={steps}",
               "--dropout=0.0", f"--eval_interval={interval}"]
    llama_lab = [sys.executable, "-m", "llama_core", "train", "--preset", PRESET,
                 "--corpus", corpus_name, "--json", "--steps", str(steps),
                 "--set", f"eval_interval={interval}"]
    if compile != "none":
        llama_lab.append("compile=true")
    return {"nanoGPT train.py": nanogpt, "Llama Lab train": llama_lab}


def run_timed(side: str, command: list[str], cwd: Path, env: dict,
              log: Path) -> tuple[float, str]:
    """Run one whole process; its wall seconds and its stdout (both streams go to log)."""
    with open(log, "w") as out:
        start = time.perf_counter()
        done = subprocess.run(command, cwd=cwd, env=env, stdout=subprocess.PIPE,
                              stderr=out, text=True)
        wall = time.perf_counter() - start
        out.write(done.stdout)
    if done.returncode != 0:
        raise RecipeFailed(f"{side} exited with status {done.returncode}; its output is "
                           f"in {log}.")
    return wall, done.stdout


def final_val_loss(side: str, stdout: str, log: Path) -> float:
    """nanoGPT's last "step N: train loss X, val loss Y" line, or Llama Lab's JSON."""
    if side.startswith("nanoGPT"):
        evals = NANOGPT_EVAL_LINE.findall(stdout)
        if evals:
            return float(evals[-1][2])
    else:
        try:
            result = json.loads(stdout.strip().splitlines()[-1])
        except (IndexError, ValueError):
            result = {}
        if isinstance(result, dict) and result.get("status") == "finished" and result.get("final_val_loss") is not None:
            return float(result["final_val_loss"])
    raise RecipeFailed(f"{side} ended without a final validation loss; its output is in "
                       f"{log}.")


def recipe_benchmark(checkout: Path, corpus_name: str, text: str, steps: int, repeats: int,
                     threads: int, work: Path, compile: str = "none") -> dict:
    """Both recipes as whole processes, interleaved A, B, A, B, in ``work``."""
    copy = work / "nanoGPT"
    shutil.copytree(checkout, copy, ignore=shutil.ignore_patterns(".git", "*.bin", "*.pt"))
    prepare_shakespeare_char(text, copy / "data" / "shakespeare_char")
    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LLAMA_LAB_JOB_NICE")}
    env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
               LLAMA_LAB_RUNS=str(work / "runs"), PYTHONPATH=str(REPO_ROOT))
    commands = recipe_commands(steps, corpus_name, compile)
    cwd = {"nanoGPT train.py": copy, "Llama Lab train": REPO_ROOT}
    walls: dict[str, list[float]] = {side: [] for side in commands}
    losses: dict[str, list[float]] = {side: [] for side in commands}
    for repeat in range(repeats):
        for side, command in commands.items():
            print(f"recipe {repeat + 1}/{repeats}: {side}, {steps} steps ...", file=sys.stderr)
            log = work / f"{side.split()[0]}-{repeat + 1}.log"
            wall, stdout = run_timed(side, command, cwd[side], env, log)
            walls[side].append(round(wall, 2))
            losses[side].append(round(final_val_loss(side, stdout, log), 4))
    nano, ours = (statistics.median(walls[side]) for side in commands)
    return {"steps": steps, "repeats": repeats, "threads": threads,
            "commands": {side: " ".join(c[1:]) for side, c in commands.items()},
            "sides": [{"side": side, "wall_s": walls[side],
                       "median_wall_s": round(statistics.median(walls[side]), 2),
                       "final_val_loss": losses[side]} for side in commands],
            "wall_ratio_llama_lab_over_nanogpt": round(ours / nano, 3)}


# --- Report ---------------------------------------------------------------------------

def print_tables(report: dict) -> None:
    print(f"corpus {report['corpus']}; torch {report['torch']}; {report['threads']} threads")
    if "step" in report:
        s = report["step"]
        compiled = {"ours": ", Llama Lab's models through torch.compile",
                    "all": ", all through torch.compile"}.get(s.get("compile"), "")
        print(f"\nOne training step (median of {s['timed_steps']} after {s['warmup_steps']} "
              f"warm-up; batch {s['batch_size']} x {s['context']}{compiled}):")
        print(f"{'model':<26}{'params':>10}{'ms/step':>10}{'tokens/s':>11}{'vs nanoGPT':>12}")
        for r in s["models"]:
            print(f"{r['model']:<26}{r['params']:>10,}{r['median_ms']:>10.2f}"
                  f"{r['tokens_per_s']:>11,.0f}{r['tokens_per_s_vs_nanogpt']:>11.2f}x")
    if "recipe" in report:
        r = report["recipe"]
        print(f"\nWhole recipe ({r['steps']} steps, {r['repeats']} repeat(s), start to exit):")
        print(f"{'side':<20}{'median s':>10}  {'wall s (each)':<24}final val loss (each)")
        for side in r["sides"]:
            print(f"{side['side']:<20}{side['median_wall_s']:>10.1f}  "
                  f"{', '.join(f'{w:.1f}' for w in side['wall_s']):<24}"
                  f"{', '.join(f'{v:.4f}' for v in side['final_val_loss'])}")
        print(f"Llama Lab / nanoGPT wall time: {r['wall_ratio_llama_lab_over_nanogpt']:.2f}")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"takes a whole number of at least 1, not {text!r}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("nanogpt", help="folder of a nanoGPT work tree (never modified)")
    parser.add_argument("--threads", type=positive_int, default=2,
                        help="torch threads in this process and in both recipes (default 2)")
    parser.add_argument("--timed", type=positive_int, default=200,
                        help="timed steps per model in the step benchmark (default 200)")
    parser.add_argument("--warmup", type=int, default=20,
                        help="untimed steps before them (default 20)")
    parser.add_argument("--steps", type=positive_int, default=2000,
                        help="optimizer steps of each whole recipe (default 2000)")
    parser.add_argument("--repeats", type=positive_int, default=3,
                        help="whole-recipe runs per side (default 3)")
    parser.add_argument("--part", choices=("both", "step", "recipe"), default="both")
    parser.add_argument("--compile", choices=("none", "ours", "all"), default="none",
                        help="which models go through torch.compile, in both parts "
                             "(ours: Llama Lab's; all: nanoGPT's too)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead")
    args = parser.parse_args(argv)
    try:
        if args.warmup < 0:
            raise BenchmarkInputError(f"--warmup must be 0 or more, not {args.warmup}.")
        checkout = nanogpt_checkout(args.nanogpt)
        torch.set_num_threads(args.threads)
        corpus_name, corpus = choose_corpus()
        report = {"corpus": corpus_name, "torch": torch.__version__, "threads": args.threads,
                  "nanogpt": str(checkout)}
        if args.part in ("both", "step"):
            report["step"] = step_benchmark(checkout, corpus, args.timed, args.warmup,
                                            args.compile)
        if args.part in ("both", "recipe"):
            work = Path(tempfile.mkdtemp(prefix="vs_nanogpt-"))
            report["recipe"] = recipe_benchmark(checkout, corpus_name, corpus.text,
                                                args.steps, args.repeats, args.threads, work,
                                                args.compile)
            shutil.rmtree(work, ignore_errors=True)  # kept, with its logs, when a run fails
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except RecipeFailed as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report))
    else:
        print_tables(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
