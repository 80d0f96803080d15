"""Training: one function that turns two configs and a corpus into a trained model.

The loop is nanoGPT's: AdamW, linear warm-up then cosine decay, gradient clipping, an
evaluation every ``eval_interval`` steps on fixed validation batches. The same seed
draws the same training batches whatever the model, so two variants trained with one
seed form a paired comparison. Hooks let the job runner record metrics and stop a run;
checkpoints are safetensors files that carry their configs and tokenizer.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save_file

from .checkpoint import (CHECKPOINT_FORMAT, CheckpointHeader, check_finite,
                                check_header, damaged)
from .config import ModelConfig, TrainConfig, to_dict, train_from_dict
from .data import CharTokenizer, Corpus, load_corpus
from .errors import ConfigError, UserError
from .model import Llama, check_sampling, dropout_off, eval_mode


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


def as_trained(model_cfg: ModelConfig, train_cfg: TrainConfig) -> ModelConfig:
    """The model config as it will train: the vocabulary size taken from the corpus,
    whose context length is checked. Recording this (not the default 65) keeps stored
    parameter and FLOP counts true; a bad corpus is refused before anything is queued."""
    corpus = load_corpus(train_cfg.corpus)
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


def generate_text(model: Llama, tokenizer: CharTokenizer, prompt: str, max_new_chars: int,
                  temperature: float = 0.8, top_k: int | None = None, seed: int = 0) -> str:
    """Continue ``prompt`` by ``max_new_chars`` characters; the same seed gives the same
    text. Unknown characters in the prompt raise UnknownCharactersError naming them."""
    check_sampling(temperature, top_k)
    device = next(model.parameters()).device
    ids = tokenizer.encode(prompt) if prompt else [0]
    idx = torch.tensor([ids], dtype=torch.long, device=device)
    gen = torch.Generator().manual_seed(seed)
    with eval_mode(model):
        out = model.generate(idx, max_new_chars, temperature, top_k, gen)
    return tokenizer.decode(out[0, len(ids) if prompt else 1:].tolist())


# --- Checkpoints -------------------------------------------------------------------

def save_checkpoint(path: Path, model: Llama, tokenizer: CharTokenizer, train_cfg: TrainConfig,
                    state: dict, optimizer: torch.optim.Optimizer | None = None,
                    generator: torch.Generator | None = None) -> Path:
    """Write weights (and, for resuming, optimizer moments and RNG states) as one
    safetensors file, written to a temporary name first so a crash never leaves half a
    checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if optimizer is not None:
        names = {id(p): n for n, p in model.named_parameters()}
        for group in optimizer.param_groups:
            for p in group["params"]:
                st = optimizer.state.get(p, {})
                for key in ("exp_avg", "exp_avg_sq", "step"):
                    if key in st:
                        tensors[f"optim.{key}.{names[id(p)]}"] = (
                            torch.as_tensor(st[key]).detach().cpu().float().reshape(-1)
                            if key == "step" else st[key].detach().cpu().contiguous())
    if generator is not None:
        tensors["rng.batches"] = generator.get_state()
    tensors["rng.torch"] = torch.get_rng_state()
    metadata = {
        "format": CHECKPOINT_FORMAT,
        "model_config": json.dumps(to_dict(model.cfg)),
        "train_config": json.dumps(to_dict(train_cfg)),
        "tokenizer": tokenizer.to_json(),
        "state": json.dumps(state),
    }
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata=metadata)
    os.replace(tmp, path)
    return path


def read_checkpoint(path: Path, *, weights_only: bool = False
                    ) -> tuple[CheckpointHeader, dict[str, torch.Tensor]]:
    """The checked header and the tensors of a Llama Lab checkpoint (only the model's
    weights with ``weights_only``). A damaged, foreign or too large file is refused
    with one sentence before any tensor is read (llama_core.checkpoint)."""
    header = check_header(path, weights_only=weights_only)
    names = header.weight_names if weights_only else list(header.tensor_bytes)
    try:
        with safe_open(str(path), framework="pt") as f:
            tensors = {name: f.get_tensor(name) for name in names}
    except Exception:
        raise damaged(header.label, "its tensors cannot be read") from None
    check_finite(header.label, tensors)
    return header, tensors


def load_checkpoint(path: Path, device: str | torch.device = "cpu"
                    ) -> tuple[Llama, CharTokenizer, dict]:
    """A ready-to-use model in eval mode, its tokenizer and its metadata."""
    header, weights = read_checkpoint(path, weights_only=True)
    model = Llama(header.model_config)
    try:
        model.load_state_dict({k[len("model."):]: v for k, v in weights.items()})
    except RuntimeError:  # the file changed since its header was checked
        raise damaged(header.label, "its weights do not match its config") from None
    model.to(device).eval()
    info = {"model_config": header.model_config, "train_config": header.train_config,
            "state": header.state}
    return model, header.tokenizer, info


# --- The loop ----------------------------------------------------------------------

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
    (per-layer health). on_progress(state) gets step, tokens, seconds, eta_s about twice
    a second. should_stop() is asked every step; True ends the run as "stopped" after
    saving. The vocabulary size always comes from the corpus.

    Under ``torchrun`` (WORLD_SIZE > 1) each process trains on its slice of the same
    global batch with DistributedDataParallel, so the curve matches one process with
    that batch; only rank 0 evaluates, reports and saves.
    """
    if train_cfg.threads:
        torch.set_num_threads(train_cfg.threads)
    dist = _Distributed.from_env(train_cfg)
    device = dist.device if dist.world > 1 else resolve_device(train_cfg.device)
    corpus = corpus or load_corpus(train_cfg.corpus)
    model_cfg = dataclasses.replace(model_cfg, vocab_size=corpus.tokenizer.vocab_size)
    corpus.check_context(model_cfg.context_window)

    torch.manual_seed(train_cfg.seed)  # dropout draws from the global generator
    model = Llama(model_cfg, seed=train_cfg.seed).to(device)
    optimizer = make_optimizer(model, train_cfg, device)
    batch_gen = torch.Generator().manual_seed(train_cfg.seed)
    step, tokens, elapsed_before = 0, 0, 0.0
    if resume_from is not None:
        step, tokens, elapsed_before = _resume(resume_from, model, optimizer, batch_gen,
                                               model_cfg, device)
    tokens_before = tokens

    autocast = _autocast(device)
    forward = dist.wrap(model)
    if train_cfg.compile:
        forward = torch.compile(forward)
    val_batches = corpus.fixed_batches("val", train_cfg.eval_batches, train_cfg.batch_size,
                                       model_cfg.context_window) if dist.rank == 0 else []
    bar = _Progress(progress and dist.rank == 0, train_cfg.steps, train_cfg.time_budget)
    tokens_per_step = train_cfg.batch_size * model_cfg.context_window

    status, error = "finished", None
    loss_sum, loss_count = torch.zeros((), device=device), 0
    last_train = last_val = None
    grad_norm = torch.zeros(())
    compile_s = None
    start = time.perf_counter()
    seg_start, seg_tokens = start, 0
    last_progress = 0.0
    x = None

    def elapsed() -> float:
        return elapsed_before + time.perf_counter() - start

    # Samples start on a new line, or from the first character of a text without one.
    sample_prompt = "\n" if "\n" in corpus.tokenizer.chars else ""

    def evaluate_and_report() -> None:
        """Every rank averages its training loss; rank 0 evaluates and reports."""
        nonlocal last_train, last_val, loss_sum, loss_count, seg_start, seg_tokens
        mean_train = dist.mean(loss_sum / loss_count) if loss_count else None
        train_loss = mean_train.item() if mean_train is not None else None
        if train_loss is not None and not math.isfinite(train_loss):
            raise _Diverged(step)
        loss_sum, loss_count = torch.zeros((), device=device), 0
        last_train = train_loss
        if dist.rank != 0:
            return
        last_val = evaluate(model, val_batches, device, autocast)
        now = time.perf_counter()
        rate = seg_tokens / (now - seg_start) if now > seg_start and seg_tokens else 0.0
        if on_eval:
            on_eval({
                "step": step, "tokens": tokens, "seconds": round(elapsed(), 4),
                "train_loss": train_loss, "val_loss": last_val,
                "lr": optimizer.param_groups[0]["lr"], "grad_norm": float(grad_norm),
                "tokens_per_s": rate,
                "sample": (generate_text(model, corpus.tokenizer, sample_prompt,
                                         train_cfg.sample_chars, seed=train_cfg.seed)
                           if train_cfg.sample_chars else None),
                "extra": layer_health(model, x) if x is not None else None,
            })
        seg_start, seg_tokens = time.perf_counter(), 0  # evaluation is not training rate

    try:
        while True:
            over = step >= train_cfg.steps or (train_cfg.time_budget is not None
                                               and elapsed() >= train_cfg.time_budget)
            asked = bool(should_stop and should_stop())
            over, asked = dist.agree(over, asked)  # every rank stops at the same step
            if over or asked:
                status = "stopped" if asked and not over else status
                break
            progress_frac = step / train_cfg.steps
            if train_cfg.time_budget:
                progress_frac = max(progress_frac, elapsed() / train_cfg.time_budget)
            lr = learning_rate(train_cfg, step, progress_frac)
            for group in optimizer.param_groups:
                group["lr"] = lr

            x, y = dist.shard(*corpus.batch("train", train_cfg.batch_size,
                                             model_cfg.context_window, batch_gen))
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            t_step = time.perf_counter()
            with autocast():
                logits = forward(x)
            loss = F.cross_entropy(logits.float().flatten(0, 1), y.flatten())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if train_cfg.grad_clip > 0:
                grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(),
                                                           train_cfg.grad_clip)
            else:
                grad_norm = torch.nn.utils.get_total_norm(
                    [p.grad for p in model.parameters() if p.grad is not None])
            optimizer.step()
            if compile_s is None and train_cfg.compile:
                compile_s = time.perf_counter() - t_step
            loss_sum += loss.detach()
            loss_count += 1
            step += 1
            tokens += tokens_per_step
            seg_tokens += tokens_per_step
            if device.type == "cpu" and dist.world == 1 and not math.isfinite(loss.item()):
                raise _Diverged(step)

            if step % train_cfg.eval_interval == 0:
                evaluate_and_report()
            now = time.perf_counter()
            if now - last_progress >= 0.5 and dist.rank == 0:
                last_progress = now
                rate = (tokens - tokens_before) / max(elapsed() - elapsed_before, 1e-9)
                if on_progress:
                    on_progress({"step": step, "tokens": tokens, "seconds": elapsed(),
                                 "eta_s": _eta(train_cfg, step, elapsed())})
                bar.update(step, elapsed(), rate, last_val)
        if loss_count or last_val is None:
            evaluate_and_report()
    except _Diverged as d:
        status = "diverged"
        error = (f"The loss stopped being a finite number at step {d.step}; lower the "
                 f"learning rate (lr) or keep grad_clip on.")

    wall = elapsed()
    bar.update(step, wall, tokens / max(wall, 1e-9), last_val, force=True)
    checkpoint = None
    if checkpoint_path is not None and status != "diverged" and dist.rank == 0:
        checkpoint = save_checkpoint(
            checkpoint_path, model, corpus.tokenizer, train_cfg,
            {"step": step, "tokens": tokens, "seconds": wall, "status": status,
             "corpus": corpus.name, "data_sha256": corpus.sha256},
            optimizer, batch_gen)
    dist.close()
    return TrainResult(
        status=status, error=error, final_train_loss=last_train, final_val_loss=last_val,
        steps=step, tokens=tokens, wall_s=round(wall, 3),
        tokens_per_s=round(tokens / wall, 1) if wall > 0 else 0.0, params=model.num_params(),
        device=_device_name(device, dist.world), data_sha256=corpus.sha256,
        checkpoint=checkpoint, compile_s=compile_s)


class _Distributed:
    """What changes under ``torchrun``: which slice of each global batch this process
    trains on, gradient averaging (DistributedDataParallel), and agreeing on when to
    stop. With one process every method is a no-op."""

    def __init__(self, rank: int = 0, world: int = 1, device: torch.device | None = None):
        self.rank, self.world, self.device = rank, world, device

    @classmethod
    def from_env(cls, cfg: TrainConfig) -> "_Distributed":
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        import torch.distributed as dist
        if cfg.batch_size % world:
            raise ConfigError(f"batch_size ({cfg.batch_size}) must be a multiple of the "
                              f"number of processes ({world}) so each gets an equal share.")
        local = int(os.environ.get("LOCAL_RANK", "0"))
        use_cuda = cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())
        if use_cuda:
            torch.cuda.set_device(local)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if use_cuda else "gloo")
        device = torch.device("cuda", local) if use_cuda else torch.device("cpu")
        return cls(dist.get_rank(), world, device)

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        if self.world == 1:
            return model
        from torch.nn.parallel import DistributedDataParallel
        return DistributedDataParallel(
            model, device_ids=[self.device.index] if self.device.type == "cuda" else None)

    def shard(self, x: torch.Tensor, y: torch.Tensor):
        """Every rank draws the same global batch; each keeps its own rows."""
        if self.world == 1:
            return x, y
        n = x.shape[0] // self.world
        rows = slice(self.rank * n, (self.rank + 1) * n)
        return x[rows], y[rows]

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        if self.world == 1:
            return value
        import torch.distributed as dist
        value = value.detach().clone()
        dist.all_reduce(value)
        return value / self.world

    def agree(self, *flags: bool) -> tuple[bool, ...]:
        """Rank 0's answers, for every rank (its clock and stop button decide)."""
        if self.world == 1:
            return flags
        import torch.distributed as dist
        t = torch.tensor([float(f) for f in flags], device=self.device)
        dist.broadcast(t, src=0)
        return tuple(bool(v) for v in t.tolist())

    def close(self) -> None:
        """Leave together: a rank that tears its connections down while another still
        works (rank 0 saving the checkpoint) can make gloo abort the process."""
        if self.world > 1:
            import torch.distributed as dist
            if dist.is_initialized():
                dist.barrier()
                dist.destroy_process_group()


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


def _resume(path: Path, model: Llama, optimizer, batch_gen: torch.Generator,
            model_cfg: ModelConfig, device: torch.device) -> tuple[int, int, float]:
    """Restore weights, optimizer moments and RNG states; return step, tokens, seconds."""
    header, tensors = read_checkpoint(path)
    if header.model_config != model_cfg:
        raise UserError("The checkpoint was trained with a different model config; "
                        "resume it with the config it was saved with.")
    if "rng.torch" not in tensors:
        raise damaged(header.label, "it holds no random-number state to resume from")
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    names = {n: p for n, p in model.named_parameters()}
    for key, value in tensors.items():
        if key.startswith("optim."):  # names and shapes checked against the config
            _, kind, name = key.split(".", 2)
            p = names[name]
            st = optimizer.state.setdefault(p, {})
            st[kind] = (value.reshape(()).to(device) if kind == "step"
                        else value.to(device))
    if "rng.batches" in tensors:
        batch_gen.set_state(tensors["rng.batches"])
    torch.set_rng_state(tensors["rng.torch"])
    state = header.state
    return int(state["step"]), int(state["tokens"]), float(state["seconds"])


def train_from_checkpoint_configs(path: Path) -> tuple[ModelConfig, TrainConfig]:
    """The configs a checkpoint was trained with, to resume or re-run it."""
    header = check_header(path)
    try:
        return header.model_config, train_from_dict(header.train_config)
    except UserError as e:
        raise UserError(f"{header.label} holds a training config that cannot run here: "
                        f"{str(e).rstrip('.')}.") from None
