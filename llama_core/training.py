"""Training: one function that turns two configs and a corpus into a trained model.

The loop is nanoGPT's: AdamW, linear warm-up then cosine decay, gradient clipping, an
evaluation every ``eval_interval`` steps on fixed validation batches. The same seed
draws the same training batches whatever the model, so two variants trained with one
seed form a paired comparison. Hooks let the job runner record metrics and stop a run.
The checkpoint it saves is llama_core.checkpoint's; several processes under torchrun,
llama_core.distributed.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from .checkpoint import restore_training, save_checkpoint
from .config import ModelConfig, TrainConfig
from .corpora import load_corpus
from .data import Corpus
from .distributed import Distributed
from .errors import ConfigError
from .generate import generate_text
from .model import Llama, dropout_off, eval_mode
from .stability import Stability

REPORT_S = 0.25  # on_progress (with every step's loss since the last) four times a second


@dataclass
class TrainResult:
    """How a run ended, with the numbers the command line prints as JSON."""

    status: str  # "finished" | "stopped" | "diverged"
    error: str | None
    final_train_loss: float | None
    final_val_loss: float | None
    steps: int
    tokens: int
    wall_s: float
    tokens_per_s: float
    params: int
    device: str
    data_sha256: str
    checkpoint: Path | None = None
    compile_s: float | None = None

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        d["checkpoint"] = str(self.checkpoint) if self.checkpoint else None
        return d


def resolve_device(name: str) -> torch.device:
    """"auto" picks CUDA when present; asking for CUDA without one is a user error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device=cuda was asked for but no CUDA GPU is available; "
                          "use device=cpu or device=auto.")
    return torch.device(name)


def as_trained(model_cfg: ModelConfig, train_cfg: TrainConfig,
               corpus: Corpus | None = None) -> ModelConfig:
    """The model config as it will train: the vocabulary size taken from the corpus,
    whose context length is checked. Recording this (not the default 65) keeps stored
    parameter and FLOP counts true; a bad corpus is refused before anything is queued."""
    corpus = corpus or load_corpus(train_cfg.corpus, train_cfg.tokenizer)
    corpus.check_context(model_cfg.context_window)
    return dataclasses.replace(model_cfg, vocab_size=corpus.tokenizer.vocab_size)


def learning_rate(cfg: TrainConfig, step: int, progress: float) -> float:
    """Linear warm-up over ``warmup_steps``, then cosine decay from lr to min_lr as
    ``progress`` (0..1, of steps or of the time budget) runs out."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / (cfg.warmup_steps + 1)
    progress = min(max(progress, 0.0), 1.0)
    return cfg.min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (cfg.lr - cfg.min_lr)


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig, device: torch.device):
    """AdamW with weight decay on matrices and embeddings only, never on norm weights."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2),
                             fused=device.type in ("cpu", "cuda"))


@torch.no_grad()
def evaluate(model: Llama, batches, device: torch.device, autocast) -> float:
    """Mean cross-entropy (nats per character) over fixed batches, in eval mode."""
    total = torch.zeros((), device=device)
    with eval_mode(model):
        for x, y in batches:
            with autocast():
                logits = model(x.to(device))
            total += F.cross_entropy(logits.float().flatten(0, 1), y.to(device).flatten())
    return (total / len(batches)).item()


def layer_health(model: Llama, x: torch.Tensor) -> dict:
    """Per-layer gradient norms (of the last backward pass) and the residual stream's
    root-mean-square after each block, to see gradients flow and activations grow."""
    grads = []
    for layer in model.layers:
        squares = [p.grad.float().pow(2).sum() for p in layer.parameters() if p.grad is not None]
        grads.append(math.sqrt(sum(s.item() for s in squares)) if squares else 0.0)
    rms = []
    with torch.no_grad(), dropout_off(model):
        h = model.embed(x)
        for layer in model.layers:
            h = layer(h, model.freqs_cis)
            rms.append(h.float().pow(2).mean().sqrt().item())
    return {"grad_norm_per_layer": grads, "residual_rms_per_layer": rms}


# --- The loop -------------------------------------------------------------------------

def train(model_cfg: ModelConfig, train_cfg: TrainConfig, corpus: Corpus | None = None, *,
          on_eval: Callable[[dict], None] | None = None,
          on_progress: Callable[[dict], None] | None = None,
          should_stop: Callable[[], bool] | None = None,
          checkpoint_path: Path | None = None,
          resume_from: Path | None = None,
          progress: bool = False) -> TrainResult:
    """Train a Llama and return how it went.

    on_eval(record) gets step, tokens, seconds, train_loss (mean of the training batches
    since the last evaluation), val_loss, lr, grad_norm, tokens_per_s, sample and extra
    (per-layer health). on_progress(state) gets step, tokens, seconds, eta_s and losses
    (every step's ``(step, seconds, loss)`` since the last call) right after the first
    step, then every ``REPORT_S`` seconds and once more at the end, so a live curve can
    show every step. should_stop() is asked every step; True ends the run as "stopped"
    after a quick evaluation and saving (no sample). The vocabulary size always comes
    from the corpus.

    A run whose per-step loss goes non-finite, or (llama_core.stability) climbs far
    above random guessing after warm-up or ends above where it began, ends "diverged"
    with a sentence saying what happened and to lower the learning rate.

    Under ``torchrun`` (WORLD_SIZE > 1) each process trains on its slice of the same
    global batch with DistributedDataParallel, so the curve matches one process with
    that batch; only rank 0 evaluates, reports and saves.
    """
    if train_cfg.threads:
        torch.set_num_threads(train_cfg.threads)
    dist = Distributed.from_env(train_cfg)
    device = dist.device if dist.world > 1 else resolve_device(train_cfg.device)
    corpus = corpus or load_corpus(train_cfg.corpus, train_cfg.tokenizer)
    model_cfg = as_trained(model_cfg, train_cfg, corpus)

    torch.manual_seed(train_cfg.seed)  # dropout draws from the global generator
    model = Llama(model_cfg, seed=train_cfg.seed).to(device)
    optimizer = make_optimizer(model, train_cfg, device)
    batch_gen = torch.Generator().manual_seed(train_cfg.seed)
    done_before = (0, 0, 0.0) if resume_from is None else restore_training(
        resume_from, model, optimizer, batch_gen, device)
    bar = _Progress(progress and dist.rank == 0, train_cfg.steps, train_cfg.time_budget)
    loop = _Loop(model, optimizer, batch_gen, corpus, train_cfg, dist, device, done_before,
                 on_eval, on_progress, bar)

    status, error = "finished", None
    try:
        while (ending := loop.ending(should_stop)) is None:
            loop.train_step()
            if loop.step % train_cfg.eval_interval == 0:
                loop.evaluate_and_report()
            loop.report_progress()
        status = ending
        loop.report_progress(force=True)  # the last steps' losses, before the evaluation
        if loop.loss_count or loop.last_val is None:  # the numbers the run ends with;
            loop.evaluate_and_report(quick=status == "stopped")  # a stop is not kept waiting
        unstable = loop.stability.verdict()
        if unstable:
            status, error = "diverged", unstable
    except _Diverged as d:
        status = "diverged"
        error = (f"The loss stopped being a finite number at step {d.step}; lower the "
                 f"learning rate (lr) or keep grad_clip on.")
        nonfinite = True
    else:
        nonfinite = False

    wall = loop.elapsed()
    bar.update(loop.step, wall, loop.tokens / max(wall, 1e-9), loop.last_val, force=True)
    checkpoint = None
    if checkpoint_path is not None and not nonfinite and dist.rank == 0:
        checkpoint = save_checkpoint(
            checkpoint_path, model, corpus.tokenizer, train_cfg,
            {"step": loop.step, "tokens": loop.tokens, "seconds": wall, "status": status,
             "corpus": corpus.name, "data_sha256": corpus.sha256},
            optimizer, batch_gen)
    dist.close()
    return TrainResult(
        status=status, error=error, final_train_loss=loop.last_train,
        final_val_loss=loop.last_val, steps=loop.step, tokens=loop.tokens,
        wall_s=round(wall, 3), tokens_per_s=round(loop.tokens / wall, 1) if wall > 0 else 0.0,
        params=model.num_params(), device=_device_name(device, dist.world),
        data_sha256=corpus.sha256, checkpoint=checkpoint, compile_s=loop.compile_s)


class _Loop:
    """The parts of one run's loop, and what it counts as it goes.

    Fixed at the start: the model, optimizer, batch stream, validation batches and
    hooks. Changed by the steps: ``step`` and ``tokens``, the training losses summed
    since the last evaluation, the latest losses and gradient norm reported, and the
    clock (``elapsed`` includes the seconds trained before a resume).
    """

    def __init__(self, model: Llama, optimizer: torch.optim.Optimizer,
                 batch_gen: torch.Generator, corpus: Corpus, cfg: TrainConfig,
                 dist: Distributed, device: torch.device, done_before: tuple[int, int, float],
                 on_eval: Callable[[dict], None] | None,
                 on_progress: Callable[[dict], None] | None, bar: _Progress):
        self.model, self.optimizer, self.batch_gen = model, optimizer, batch_gen
        self.corpus, self.cfg, self.dist, self.device = corpus, cfg, dist, device
        self.on_eval, self.on_progress, self.bar = on_eval, on_progress, bar
        self.autocast = _autocast(device)
        self.forward = dist.wrap(model)
        if cfg.compile:
            self.forward = torch.compile(self.forward)
        context = model.cfg.context_window
        self.val_batches = corpus.fixed_batches("val", cfg.eval_batches, cfg.batch_size,
                                                context) if dist.rank == 0 else []
        self.tokens_per_step = cfg.batch_size * context
        # Samples start on a new line, or from the first character of a text without one.
        self.sample_prompt = "" if corpus.tokenizer.unknown("\n") else "\n"

        self.step, self.tokens, self.seconds_before = done_before
        self.tokens_before = self.tokens
        self.loss_sum, self.loss_count = torch.zeros((), device=device), 0
        self.last_train: float | None = None
        self.last_val: float | None = None
        self.grad_norm = torch.zeros(())
        self.last_batch: torch.Tensor | None = None  # for layer_health
        self.compile_s: float | None = None
        self.start = time.perf_counter()
        self.segment_start, self.segment_tokens = self.start, 0  # tokens/s since an eval
        self.last_progress = 0.0
        self.new_losses: list[tuple[int, float, torch.Tensor]] = []  # not yet reported
        self.stability = Stability(model.cfg.vocab_size, cfg.warmup_steps)

    def elapsed(self) -> float:
        return self.seconds_before + time.perf_counter() - self.start

    def ending(self, should_stop: Callable[[], bool] | None) -> str | None:
        """None to go on; "finished" when out of steps or time, "stopped" when asked.
        Every rank ends at the same step: rank 0's clock and stop button decide."""
        cfg = self.cfg
        over = self.step >= cfg.steps or (cfg.time_budget is not None
                                          and self.elapsed() >= cfg.time_budget)
        asked = bool(should_stop and should_stop())
        over, asked = self.dist.agree(over, asked)
        if over:
            return "finished"
        return "stopped" if asked else None

    def train_step(self) -> None:
        """One optimizer step on the next batch, at the scheduled learning rate."""
        cfg, model, optimizer = self.cfg, self.model, self.optimizer
        progress = self.step / cfg.steps
        if cfg.time_budget:
            progress = max(progress, self.elapsed() / cfg.time_budget)
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(cfg, self.step, progress)

        x, y = self.dist.shard(*self.corpus.batch("train", cfg.batch_size,
                                                  model.cfg.context_window, self.batch_gen))
        x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
        started = time.perf_counter()
        with self.autocast():
            logits = self.forward(x)
        loss = F.cross_entropy(logits.float().flatten(0, 1), y.flatten())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            self.grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        else:
            self.grad_norm = torch.nn.utils.get_total_norm(
                [p.grad for p in model.parameters() if p.grad is not None])
        optimizer.step()
        if self.compile_s is None and cfg.compile:
            self.compile_s = time.perf_counter() - started

        self.last_batch = x
        self.loss_sum += loss.detach()
        if self.dist.rank == 0:  # read back in one batch per report: no sync per step
            self.new_losses.append((self.step + 1, self.elapsed(), loss.detach()))
        self.loss_count += 1
        self.step += 1
        self.tokens += self.tokens_per_step
        self.segment_tokens += self.tokens_per_step
        on_one_cpu = self.device.type == "cpu" and self.dist.world == 1
        if on_one_cpu and not math.isfinite(loss.item()):  # else at each eval: no sync per step
            raise _Diverged(self.step)

    def evaluate_and_report(self, quick: bool = False) -> None:
        """Every rank averages its training loss since the last evaluation; rank 0
        evaluates on the validation batches and hands the record to on_eval (``quick``:
        without the sample and layer health, for a run asked to stop)."""
        train_loss = (self.dist.mean(self.loss_sum / self.loss_count).item()
                      if self.loss_count else None)
        if train_loss is not None and not math.isfinite(train_loss):
            raise _Diverged(self.step)
        self.loss_sum, self.loss_count = torch.zeros((), device=self.device), 0
        self.last_train = train_loss
        if self.dist.rank != 0:
            return
        self.last_val = evaluate(self.model, self.val_batches, self.device, self.autocast)
        now = time.perf_counter()
        rate = (self.segment_tokens / (now - self.segment_start)
                if now > self.segment_start and self.segment_tokens else 0.0)
        if self.on_eval:
            self.on_eval({
                "step": self.step, "tokens": self.tokens, "seconds": round(self.elapsed(), 4),
                "train_loss": train_loss, "val_loss": self.last_val,
                # The unit in which character and byte-pair runs compare (kept in extra).
                "val_bpc": self.corpus.bits_per_char(self.last_val),
                "lr": self.optimizer.param_groups[0]["lr"],
                "grad_norm": float(self.grad_norm), "tokens_per_s": rate,
                "sample": None if quick else self._sample(),
                "extra": (layer_health(self.model, self.last_batch)
                          if self.last_batch is not None and not quick else None),
            })
        # Evaluation is not training: the next rate counts from here.
        self.segment_start, self.segment_tokens = time.perf_counter(), 0

    def _sample(self) -> str | None:
        if not self.cfg.sample_chars:
            return None
        return generate_text(self.model, self.corpus.tokenizer, self.sample_prompt,
                             self.cfg.sample_chars, seed=self.cfg.seed)

    def report_progress(self, force: bool = False) -> None:
        """On rank 0, after the first step and then every ``REPORT_S`` (or when
        ``force``d): the new steps' losses to the stability watch and on_progress, and
        the terminal's bar."""
        now = time.perf_counter()
        if self.dist.rank != 0 or (not force and now - self.last_progress < REPORT_S):
            return
        self.last_progress = now
        losses = self.take_losses()
        elapsed = self.elapsed()
        rate = (self.tokens - self.tokens_before) / max(elapsed - self.seconds_before, 1e-9)
        if self.on_progress:
            self.on_progress({"step": self.step, "tokens": self.tokens, "seconds": elapsed,
                              "eta_s": _eta(self.cfg, self.step, elapsed),
                              "losses": losses})
        self.bar.update(self.step, elapsed, rate, self.last_val)

    def take_losses(self) -> list[tuple[int, float, float]]:
        """The steps' losses since the last call as floats (one device sync for all)."""
        if not self.new_losses:
            return []
        values = torch.stack([t for _, _, t in self.new_losses]).float().tolist()
        out = [(step, round(seconds, 4), value)
               for (step, seconds, _), value in zip(self.new_losses, values)]
        self.new_losses = []
        for step, _, value in out:
            self.stability.observe(step, value)
        return out


class _Progress:
    """A one-line progress report on stderr, at most twice a second."""

    def __init__(self, enabled: bool, total_steps: int, time_budget: float | None):
        self.enabled = enabled and sys.stderr.isatty()
        self.total, self.budget = total_steps, time_budget
        self.last = 0.0

    def update(self, step: int, elapsed: float, tokens_per_s: float, val: float | None,
               force: bool = False) -> None:
        if not self.enabled or (not force and time.perf_counter() - self.last < 0.5):
            return
        self.last = time.perf_counter()
        if self.budget:
            frac = min(elapsed / self.budget, 1.0)
        else:
            frac = step / self.total
        bar = "#" * int(frac * 30)
        loss = f" val {val:.3f}" if val is not None else ""
        sys.stderr.write(f"\r[{bar:<30}] {frac:4.0%} step {step} {elapsed:5.1f}s "
                         f"{tokens_per_s:,.0f} tok/s{loss}   ")
        if force:
            sys.stderr.write("\n")
        sys.stderr.flush()


def _device_name(device: torch.device, world: int) -> str:
    name = "cpu" if device.type == "cpu" else torch.cuda.get_device_name(device)
    return f"{world} x {name}" if world > 1 else name


class _Diverged(Exception):
    def __init__(self, step: int):
        self.step = step


def _eta(cfg: TrainConfig, step: int, elapsed: float) -> float | None:
    by_steps = elapsed / step * (cfg.steps - step) if step else None
    if cfg.time_budget is None:
        return by_steps
    by_time = max(cfg.time_budget - elapsed, 0.0)
    return by_time if by_steps is None else min(by_time, by_steps)


def _autocast(device: torch.device):
    """bf16 autocast on CUDA (tensor cores); plain fp32 on CPU, where bf16 is slower."""
    if device.type == "cuda":
        return lambda: torch.autocast("cuda", dtype=torch.bfloat16)
    return lambda: torch.autocast("cpu", enabled=False)
