"""The body of one training job: the process that trains one queued run of the store.

``execute_run`` is shared by the job manager's warm workers (``worker_main``) and the
command line's ``train`` (``--run-id``, or a run it just queued for itself). It reads as
its three steps: load the run's configs from the store, train with metrics flushed to
the store at every evaluation (and every step's loss, in one small batch a few times a
second, for the live curve), and record how the run ended. Every ending is recorded
in a sentence a student can act on, with an exit code for whoever started the process:
0 when the run ended as a run should (finished, stopped, diverged), 1 when training
crashed or was cut short, 2 for a user's mistake.

A warm worker is started ahead of time (imports, the default corpus, a throw-away
two-step model on the CPU so autograd, AdamW and generation are warm), says ``ready``
on stdout and blocks reading one line, ``<run id> <gpu|->``, from stdin; it executes
exactly that run and exits. CUDA is never touched during warm-up, so the GPU a run
should use can still be chosen when it is handed over. ``llama_core.lab.jobs`` starts,
watches and stops these processes.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import signal
import sys
import threading
import time
import traceback
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from ..config import ModelConfig, TrainConfig, model_from_dict, train_from_dict
from ..errors import UserError
from .store import DiskFull, Run, RunStore, StoreError, check_run_id

ENV_THREADS = "LLAMA_LAB_THREADS"  # the job manager's share of the cores for this job
ENV_NICE = "LLAMA_LAB_JOB_NICE"  # how much this job yields the CPU to the dashboard
PROCESS_LOG = "process.log"
ERROR_LOG = "error.log"
CHECKPOINT = "model.safetensors"

OOM_MESSAGE = "The run ran out of GPU memory; use a smaller batch_size, context_window or d_model."
CPU_OOM_MESSAGE = ("The run ran out of memory; use a smaller batch_size, context_window "
                   "or d_model.")
DISK_FULL_MESSAGE = ("The run could not save its files because the disk is full (or over "
                     "its quota); free some space and start it again. The metrics up to "
                     "then are kept.")
FORCED_STOP_MESSAGE = ("It was stopped by force because it did not stop on its own; the "
                       "metrics up to then are kept.")
TERMINATED_MESSAGE = ("Its training process was terminated (SIGTERM) before it finished; "
                      "the metrics up to then are kept.")
TERMINATED_EARLY_MESSAGE = ("Its training process was terminated (SIGTERM) before "
                            "training began.")
CTRL_C_MESSAGE = ("It was interrupted (Ctrl+C) before it finished; the metrics up to then "
                  "are kept.")
STOP_POLL_S = 0.1  # a stop-flag read costs ~50 us: ten a second keep Stop under a second


def lower_priority() -> None:
    """Yield the CPU to the dashboard: renice this job by $LLAMA_LAB_JOB_NICE, once.

    Call it before torch starts its thread pool (threads inherit the priority of the
    thread that creates them)."""
    nice = os.environ.pop(ENV_NICE, "")
    if nice.isdigit() and int(nice) > 0:
        try:
            os.nice(int(nice))
        except OSError:
            pass  # not allowed here: train at the priority we have


def _threads_given() -> int | None:
    """The thread count the job manager chose for this job ($LLAMA_LAB_THREADS)."""
    threads = os.environ.get(ENV_THREADS)
    return int(threads) if threads and threads.isdigit() and int(threads) > 0 else None


# --- One job ------------------------------------------------------------------------

def execute_run(store_path: str | os.PathLike | None, run_id: str,
                progress: bool = False) -> int:
    """Train the queued run ``run_id`` of the store at ``store_path`` in this process.

    Returns the exit code: 0 when the run ended as a run should (finished, stopped,
    diverged), 1 when training crashed, 2 for a user's mistake (bad id, bad config, a
    run that is not queued). Every outcome is recorded in the store; a user's mistake is
    printed as one line on stderr.
    """
    lower_priority()  # started by a JobManager (from a shell, nothing is set)
    try:
        store = RunStore(store_path)
        run = store.get_run(check_run_id(run_id))
    except UserError as e:
        print(e, file=sys.stderr)
        return 2
    if run.status != "queued":
        print(f"Run {run_id} is {run.status}, not queued; start a new run to train again.",
              file=sys.stderr)
        return 2
    try:
        model_cfg, train_cfg = _load_configs(run)
    except UserError as e:
        return _fail(store, run_id, str(e), 2)
    run_dir = store.run_dir(run_id, create=True)
    with _sigterm_unwinds():
        try:
            return _train_and_record(store, run_id, model_cfg, train_cfg, run_dir, progress)
        except _Terminated:  # SIGTERM before training began
            store.finish_run(run_id, "interrupted", None, TERMINATED_EARLY_MESSAGE)
            return 1
        except Exception as e:  # importing or setting up failed: a bug, not the user's
            _write_traceback(run_dir, e)
            return _fail(store, run_id, f"Training could not start ({_short(e)}); the full "
                                        f"traceback is in {run_dir / ERROR_LOG}.", 1)


def _load_configs(run: Run) -> tuple[ModelConfig, TrainConfig]:
    """The run's stored configs, validated, with the job's thread share filled in."""
    try:
        model_cfg = model_from_dict(run.model_config)
        train_cfg = train_from_dict(run.train_config)
    except TypeError as e:
        raise UserError(f"The stored config of run {run.id} is damaged ({e}); start a new "
                        "run.") from None
    threads = _threads_given()
    if train_cfg.threads is None and threads is not None:
        train_cfg = dataclasses.replace(train_cfg, threads=threads)
    return model_cfg, train_cfg


def _train_and_record(store: RunStore, run_id: str, model_cfg: ModelConfig,
                      train_cfg: TrainConfig, run_dir: Path, progress: bool) -> int:
    """Mark the run running, train it with every evaluation flushed to the store, and
    record how it ended; returns the exit code."""
    try:
        import torch

        from ..training import resolve_device, train
        device = resolve_device(train_cfg.device)
    except UserError as e:
        return _fail(store, run_id, str(e), 2)
    if not store.mark_running(run_id, os.getpid(), str(device), torch.__version__):
        print(f"Run {run_id} was started or stopped elsewhere; nothing to do.",
              file=sys.stderr)
        return 0
    try:
        result = train(model_cfg, train_cfg, on_eval=lambda r: store.add_metric(run_id, r),
                       on_progress=lambda p: store.add_step_losses(run_id, p["losses"]),
                       should_stop=_stop_flag(store, run_id),
                       checkpoint_path=run_dir / CHECKPOINT, progress=progress)
    except UserError as e:
        if _is_disk_full(e):  # the store's DiskFull: not the user's mistake
            return _fail(store, run_id, DISK_FULL_MESSAGE, 1)
        return _fail(store, run_id, str(e), 2)
    except (_Terminated, KeyboardInterrupt) as e:
        return _record_interruption(store, run_id, e)
    except Exception as e:
        _write_traceback(run_dir, e)
        return _fail(store, run_id, _crash_message(e, run_dir), 1)
    store.finish_run(run_id, result.status, result.to_json(), result.error)
    if result.error:
        print(result.error, file=sys.stderr)
    return 0


def _stop_flag(store: RunStore, run_id: str):
    """``should_stop`` for the trainer: the store's stop flag, read at most every
    ``STOP_POLL_S`` seconds however fast the steps are."""
    last_read, stop = 0.0, False

    def should_stop() -> bool:
        nonlocal last_read, stop
        now = time.monotonic()
        if now - last_read >= STOP_POLL_S:
            last_read, stop = now, store.stop_requested(run_id)
        return stop
    return should_stop


def _fail(store: RunStore, run_id: str, message: str, code: int) -> int:
    """Record the run as failed with ``message``, say it on stderr, return ``code``."""
    try:
        store.finish_run(run_id, "failed", None, message)
    except StoreError:  # the store cannot take it now (disk still full, damaged):
        pass            # the run's dead owner gets it marked interrupted later
    print(message, file=sys.stderr)
    return code


def _record_interruption(store: RunStore, run_id: str, e: BaseException) -> int:
    """A run cut short by Ctrl+C or SIGTERM: stopped if a stop was asked for (the job
    manager's last resort), else interrupted; the metrics so far stay."""
    if isinstance(e, KeyboardInterrupt):
        store.finish_run(run_id, "interrupted", None, CTRL_C_MESSAGE)
        return 130
    if store.stop_requested(run_id):
        store.finish_run(run_id, "stopped", None, FORCED_STOP_MESSAGE)
        return 0
    store.finish_run(run_id, "interrupted", None, TERMINATED_MESSAGE)
    return 1


# --- How a crash reads --------------------------------------------------------------

def _crash_message(e: BaseException, run_dir: Path) -> str:
    """What a student can do about a crash: free disk, use less memory, or read the
    traceback (already written to the run's error log)."""
    if _is_disk_full(e):
        return DISK_FULL_MESSAGE
    if _is_cuda_oom(e):
        return OOM_MESSAGE
    if _is_cpu_oom(e):
        return CPU_OOM_MESSAGE
    return f"Training crashed ({_short(e)}); the full traceback is in {run_dir / ERROR_LOG}."


def _short(e: BaseException) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    text = text if len(text) <= 200 else text[:197] + "..."
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _is_cuda_oom(e: BaseException) -> bool:
    torch = sys.modules.get("torch")
    oom_type = getattr(getattr(torch, "cuda", None), "OutOfMemoryError", None)
    if oom_type is not None and isinstance(e, oom_type):
        return True
    return isinstance(e, RuntimeError) and "CUDA out of memory" in str(e)


def _is_disk_full(e: BaseException | None) -> bool:
    """No space left, a quota or a file-size limit hit while writing the run's files."""
    codes = {errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC)}
    while e is not None:
        if isinstance(e, DiskFull) or (isinstance(e, OSError) and e.errno in codes):
            return True
        if "No space left on device" in str(e) or "File too large" in str(e):
            return True
        e = e.__cause__ or e.__context__
    return False


def _is_cpu_oom(e: BaseException) -> bool:
    return isinstance(e, MemoryError) or (
        isinstance(e, RuntimeError) and "DefaultCPUAllocator: can't allocate" in str(e))


def _write_traceback(run_dir: Path, e: BaseException) -> None:
    try:
        with open(run_dir / ERROR_LOG, "a", encoding="utf-8") as f:
            f.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} pid {os.getpid()}\n")
            f.write("".join(traceback.format_exception(e)))
    except OSError:
        pass


class _Terminated(BaseException):
    """SIGTERM arrived: unwind the trainer (not an Exception, so nothing swallows it)."""


@contextmanager
def _sigterm_unwinds() -> Iterator[None]:
    """While inside, SIGTERM raises ``_Terminated`` so the run's end gets recorded (only
    the main thread may take signals; elsewhere, e.g. under a test's thread, as is)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_term(signum, frame):
        raise _Terminated()
    old_handler = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old_handler)


# --- The warm worker ----------------------------------------------------------------

def _warm_up() -> None:
    """Pay every first-call cost (imports, corpus, autograd, AdamW, generation) now."""
    threads = _threads_given()
    import torch
    if threads is not None:
        torch.set_num_threads(threads)
    from ..corpora import load_corpus
    from ..training import train
    try:
        corpus = load_corpus(TrainConfig().corpus)
        train(
            ModelConfig(context_window=8, d_model=16, n_layers=1, n_heads=2),
            TrainConfig(steps=2, eval_interval=1, eval_batches=1, batch_size=2,
                        sample_chars=2, warmup_steps=0, device="cpu"), corpus)
    except Exception as e:  # a worker that is only half warm is still useful
        print(f"warm-up skipped: {_short(e)}", file=sys.stderr)


def worker_main(argv: list[str]) -> int:
    """A warm worker: get ready, then execute the one run named on stdin and exit."""
    db = argv[argv.index("--db") + 1] if "--db" in argv else None
    ready = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # stray prints go to the log, never into the handshake pipe
    lower_priority()
    _warm_up()
    try:
        ready.write("ready\n")
        ready.flush()
    except (BrokenPipeError, OSError):
        pass  # the manager stopped listening; stdin says whether there is work
    line = sys.stdin.readline().split()
    try:
        ready.close()
    except OSError:
        pass
    if not line:
        return 0  # the manager closed the pipe: no run for us
    run_id, gpu = line[0], (line[1] if len(line) > 1 else "-")
    if gpu != "-":
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu  # CUDA is untouched so far
    try:
        run_dir = RunStore(db).run_dir(run_id, create=True)
        fd = os.open(run_dir / PROCESS_LOG, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
    except (UserError, OSError) as e:
        print(f"worker cannot open the run's log: {e}", file=sys.stderr)
    return execute_run(db, run_id)
