"""Background training jobs: a bounded number of runs at once, each in its own process.

Why processes: training must never run in the dashboard's script thread, a crash or a
``kill -9`` must cost one run and nothing else, and CUDA must never be initialised in a
process that later forks. So every run executes in a fresh OS process started with
``start_new_session=True`` (its own process group, which a stop can signal as a whole,
and which outlives the dashboard: a server restart does not kill a run that is halfway).
What such a process does is ``llama_core.lab.worker``; this module starts, watches and
stops them.

The store is the queue. ``submit`` only writes a queued run to the SQLite store;
``RunStore.claim_next`` hands the next queued run to a process inside one
``BEGIN IMMEDIATE`` transaction, and only while fewer than ``max_concurrent`` runs hold
a slot (and, in a classroom, while the student holds fewer than the per-student cap,
which the manager reads from ``classroom.running_cap`` on every round). Because the
count and the queue live in the database, the limit holds across several managers (a
second dashboard, a code reload) and the queue survives a restart.

Fast start: importing torch and llama_core takes 1-2 s on two cores, and building the
first torch optimizer imports ``torch._dynamo`` (another ~1.5 CPU-s), longer than the
whole of a tiny run. The manager therefore keeps *warm workers* (``worker.worker_main``,
started ahead of time with ``--db PATH``) that are ready and wait for one run id on
stdin. A worker executes exactly one run and exits, so runs never share a process (no
leaked state, memory returned, a kill hits one run), and the manager boots a
replacement, but only once the new run has stored its first metric (or after
``SPAWN_DEFER_S``) unless a free slot needs it now: on two cores a booting worker would
otherwise slow the very start it is meant to speed up (median first metric 1.0 s against
0.04 s, measured with benchmarks/bench_runs.py). If workers keep dying before they are
ready, or ``warm=False``, the manager falls back to the plain
``python -m llama_core train --run-id ID --db PATH`` subprocess.

Each job gets ``threads = max(1, cores // max_concurrent)`` (``LLAMA_LAB_THREADS`` and
``OMP_NUM_THREADS``), so parallel runs do not oversubscribe the cores; on a machine with
CUDA the default is one run per GPU. Jobs run at a lower CPU priority (nice
``LLAMA_LAB_JOB_NICE``, default 5), so a busy classroom's page views are answered before
training steps; with nothing else to do, training still gets every core.

A daemon thread polls every ``poll_interval`` seconds (and at once on ``submit``): it
reaps finished processes, records a run whose process died without reporting as failed
or interrupted (metrics kept) in a sentence a student can act on, starts queued runs
when slots free, escalates stops (``stop_requested`` in the store, which the trainer
checks every step and then saves; after ``stop_grace_s`` SIGTERM; after ``kill_grace_s``
more SIGKILL) and sweeps orphans: runs marked running whose process no longer exists.

Where a run trains is the one thing a cluster changes. With ``cluster`` (or
``$LLAMA_LAB_CLUSTER``) naming a Ray cluster, the runs this manager claims -- by the same
fair queue, caps and owners -- go to ``llama_core.lab.ray_executor.RayExecutor`` instead
of local processes, and each round of the loop lets it write what came back into the
store; no process is started or signalled here then. The claim is held under this
process's pid, so the orphan sweep of a later manager still catches runs whose manager
died.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from ..config import (ModelConfig, TrainConfig, model_from_dict, train_from_dict,
                      validate_model, validate_train)
from ..corpora import check_offered
from ..errors import UserError
from . import classroom
from .store import REPO_ROOT, RunNotFound, RunStore, check_run_id, pid_alive
from .ray_executor import cluster_address
from .worker import ENV_NICE, ENV_THREADS, FORCED_STOP_MESSAGE, PROCESS_LOG

log = logging.getLogger("llama_core.lab.jobs")

JOB_NICE = 5  # how much a job yields the CPU to the server answering pages
WORKER_LOG = "workers.log"
SPAWN_DEFER_S = 5.0  # hold back booting spares this long while a new run starts up

_WORKER_BOOT = ("import sys; from llama_core.lab.worker import worker_main; "
                "sys.exit(worker_main(sys.argv[1:]))")


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def gpu_count() -> int:
    """CUDA GPUs this process may use (0 without a CUDA build of torch)."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return 0
    try:
        import torch
        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:
        return 0


def _child_env(threads: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()  # a job is one process, never a torchrun rank
           if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK")}
    env[ENV_THREADS] = str(threads)
    env["OMP_NUM_THREADS"] = str(threads)
    env["MKL_NUM_THREADS"] = str(threads)
    env.setdefault(ENV_NICE, str(JOB_NICE))
    env["PYTHONUNBUFFERED"] = "1"
    paths = [str(REPO_ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    return env


def _signal_name(rc: int) -> str:
    try:
        return signal.Signals(-rc).name
    except ValueError:
        return f"signal {-rc}"


# --- Who may queue or stop a run ----------------------------------------------------

def admit(model_cfg: ModelConfig | dict, train_cfg: TrainConfig | dict,
          offered_corpora_only: bool = False) -> tuple[ModelConfig, TrainConfig]:
    """Every check a run passes before it may be queued, none of which opens a file:
    valid configs, a corpus the server offers (for a browser-facing manager), the
    classroom's limits, and an estimated memory that fits what is free."""
    model = (model_from_dict(model_cfg) if isinstance(model_cfg, dict)
             else validate_model(model_cfg))
    train = (train_from_dict(train_cfg) if isinstance(train_cfg, dict)
             else validate_train(train_cfg))
    if offered_corpora_only:
        train = dataclasses.replace(train, corpus=check_offered(train.corpus))
    classroom.check_limits(model, train)
    from ..memory import check_fits  # lazily: torch, which the store needs not
    check_fits(model, train)
    return model, train


class NotYourRun(UserError):
    """A dashboard user tried to control a run that another student started."""


def check_owner(run, student: str) -> None:
    """Refuse to let one student stop or delete another's run (read-only for them)."""
    if run.owner != student:
        raise NotYourRun(f"Run {run.id} was started by someone else, so you can watch it "
                         "but not stop or delete it; only they or the teacher can.")


# --- The manager --------------------------------------------------------------------

@dataclass
class _Worker:
    proc: subprocess.Popen
    ready: bool = False


@dataclass
class _Job:
    run_id: str
    proc: subprocess.Popen
    kind: str  # "warm" | "cold"
    started: float
    gpu: int | None = None
    stop_at: float | None = None  # SIGTERM the process group after this moment
    kill_at: float | None = None  # then SIGKILL after this one
    reported: bool = False  # the run has stored its first metric
    log: Any = field(default=None, repr=False)

    def close_pipes(self) -> None:
        """Close our ends of the process's pipes and its log file."""
        for f in (self.proc.stdin, self.proc.stdout, self.log):
            try:
                if f is not None:
                    f.close()
            except OSError:
                pass


class JobManager:
    """Runs queued runs in background processes, at most ``max_concurrent`` at once.

    Thread-safe: the dashboard shares one instance across sessions.
    """

    def __init__(self, store_path: str | os.PathLike | None = None,
                 max_concurrent: int | None = None, *, warm: bool = True,
                 warm_spares: int | None = None, poll_interval: float = 0.25,
                 stop_grace_s: float = 10.0, kill_grace_s: float = 5.0,
                 orphan_sweep_s: float = 5.0, offered_corpora_only: bool = False,
                 cluster: str | None = None):
        self.store = RunStore(store_path)
        # A browser-facing manager (the dashboard's) trains only on the server's own
        # corpora and uploads: a path typed in a page must never reach a file.
        self.offered_corpora_only = offered_corpora_only
        self.store_path = self.store.path
        max_concurrent_given = max_concurrent is not None
        gpus = gpu_count() if max_concurrent is None and not cluster_address(cluster) else 0
        if max_concurrent is None:
            max_concurrent = gpus or max(1, available_cores() // 2)
        if not isinstance(max_concurrent, int) or max_concurrent < 1:
            raise UserError(f"max_concurrent must be a whole number of at least 1, not "
                            f"{max_concurrent!r}.")
        self.max_concurrent = max_concurrent
        self.threads = max(1, available_cores() // max_concurrent)
        self._gpus = list(range(gpus)) if gpus > 1 else []
        self.warm = warm
        self.warm_spares = max_concurrent if warm_spares is None else max(0, warm_spares)
        self.poll_interval = poll_interval
        self.stop_grace_s = stop_grace_s
        self.kill_grace_s = kill_grace_s
        self.orphan_sweep_s = orphan_sweep_s
        self._env = _child_env(self.threads)
        self._lock = threading.RLock()
        self._wake = threading.Event()
        self._closing = False
        self._jobs: dict[str, _Job] = {}
        self._spares: list[_Worker] = []
        self._foreign_stops: dict[str, tuple[int, float, float | None]] = {}
        self._requeued: set[str] = set()
        self._warm_failures = 0
        self._last_sweep = 0.0
        self.orphans_marked = self.store.mark_interrupted_orphans()
        self._last_sweep = time.monotonic()
        self.cluster = None  # the executor seam: None trains in local processes
        address = cluster_address(cluster)
        if address is not None:
            from .ray_executor import RayExecutor
            self.cluster = RayExecutor(address, self.store, self.threads, stop_grace_s)
            self.warm = False  # no local workers to keep ready
        self._max_concurrent_given = max_concurrent_given
        with self._lock:
            self._tick()
        self._thread = threading.Thread(target=self._loop, name="llama-lab-jobs",
                                        daemon=True)
        self._thread.start()

    def __repr__(self) -> str:
        where = "" if self.cluster is None else f", cluster={self.cluster.address!r}"
        return (f"JobManager({str(self.store_path)!r}, max_concurrent={self.max_concurrent}, "
                f"threads={self.threads}, warm={self.warm}{where})")

    # -- public API --

    def admit(self, model_cfg: ModelConfig | dict, train_cfg: TrainConfig | dict
              ) -> tuple[ModelConfig, TrainConfig]:
        """``admit`` with this manager's corpus rule. Callers queuing several runs admit
        them all first, so a refusal queues none."""
        return admit(model_cfg, train_cfg, self.offered_corpora_only)

    def submit(self, model_cfg: ModelConfig | dict, train_cfg: TrainConfig | dict,
               name: str | None = None, group: str | None = None,
               owner: str | None = None) -> str:
        """Queue a run and start it at once if a slot is free; return its id."""
        if self._closing:
            raise RuntimeError("this JobManager has been shut down")
        model, train = self.admit(model_cfg, train_cfg)
        if self.cluster is not None:
            self.cluster.reachable()  # one sentence, nothing queued, the queue as it was
        from ..training import as_trained
        model = as_trained(model, train)
        run_id = classroom.create_run(self.store, model, train, name=name, group=group,
                                      owner=owner)
        with self._lock:
            self._start_queued()
        self._wake.set()
        return run_id

    def stop(self, run_id: str, on_behalf_of: str | None = None) -> str:
        """Ask a run to stop and return its status now. A queued run is stopped at once;
        a running one saves a checkpoint and stops within a step or so, and is
        terminated if it has not stopped after ``stop_grace_s``.

        ``on_behalf_of`` is the dashboard's student id: the run must be theirs. None is
        the server's operator (the command line, a teacher with the key)."""
        if on_behalf_of is not None:
            check_owner(self.store.get_run(run_id), on_behalf_of)
        status = self.store.request_stop(check_run_id(run_id))
        if status == "running" and self.cluster is not None:
            with self._lock:
                self.cluster.stop(run_id)
        elif status == "running":
            now = time.monotonic()
            with self._lock:
                job = self._jobs.get(run_id)
                if job is not None:
                    if job.stop_at is None:
                        job.stop_at = now + self.stop_grace_s
                else:
                    pid = self.store.get_run(run_id).pid
                    if pid and run_id not in self._foreign_stops:
                        self._foreign_stops[run_id] = (pid, now + self.stop_grace_s, None)
        self._wake.set()
        return status

    def wait(self, run_id: str, timeout: float | None = None, poll: float = 0.1) -> str:
        """Block until the run is no longer queued or running; return its status."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            status = self.store.get_run(run_id).status
            if status not in ("queued", "running"):
                return status
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"run {run_id} still {status} after {timeout} s")
            time.sleep(poll)

    def wait_ready(self, timeout: float = 30.0) -> bool:
        """Block until the warm workers are ready (True), for benchmarks and tests."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                self._read_readiness()
                target = self.warm_spares if self.warm else 0
                if sum(w.ready for w in self._spares) >= target:
                    return True
            time.sleep(0.05)
        return False

    def active(self) -> list[str]:
        """Ids of the runs whose processes (or cluster tasks) this manager started and
        that still run."""
        with self._lock:
            return list(self._jobs) + (list(self.cluster.jobs) if self.cluster else [])

    def shutdown(self, stop_runs: bool = False, timeout: float = 30.0) -> None:
        """Stop the poll thread and the idle workers. Runs keep going in their own
        processes (they record their own end) unless ``stop_runs``. On a cluster, tasks
        end with this connection: see ``RayExecutor.shutdown``."""
        if stop_runs:
            for run_id in self.active():
                try:
                    self.stop(run_id)
                except UserError:
                    pass
            deadline = time.monotonic() + timeout
            while self.active() and time.monotonic() < deadline:
                time.sleep(0.1)
        self._closing = True
        self._wake.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        with self._lock:
            for w in self._spares:
                self._retire(w)
            self._spares.clear()
            for job in self._jobs.values():
                job.close_pipes()
            if self.cluster is not None:
                self.cluster.shutdown(timeout)

    def __enter__(self) -> "JobManager":
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()

    # -- the loop --

    def _loop(self) -> None:
        while not self._closing:
            self._wake.wait(self.poll_interval)
            self._wake.clear()
            if self._closing:
                break
            try:
                with self._lock:
                    self._tick()
            except Exception:  # the loop must outlive any one bad moment
                log.exception("job manager poll failed")
                time.sleep(1.0)

    def _tick(self) -> None:
        """One round: reap, escalate stops, sweep orphans, start runs, refill spares."""
        if self.cluster is not None:
            self._cluster_tick()
            return
        self._reap()
        self._escalate()
        now = time.monotonic()
        if now - self._last_sweep >= self.orphan_sweep_s:
            self._last_sweep = now
            self.store.mark_interrupted_orphans(
                skip_pids={j.proc.pid for j in self._jobs.values()}
                | {w.proc.pid for w in self._spares} | {os.getpid()})
        self._read_readiness()
        self._start_queued()
        self._refill_spares()

    def _cluster_tick(self) -> None:
        """The same round with the cluster as executor: it records what its runs
        reported and how they ended; runs are claimed here, by the same fair queue."""
        try:
            self.cluster.connect()  # once; then only if it was unreachable
        except UserError:
            return  # unreachable: the queue waits as it is
        if not self._max_concurrent_given and self.cluster.slots:
            self.max_concurrent = self.cluster.slots  # as many as the cluster has room for
        self.cluster.tick()
        now = time.monotonic()
        if now - self._last_sweep >= self.orphan_sweep_s:
            self._last_sweep = now
            self.store.mark_interrupted_orphans(skip_pids={os.getpid()})
        self._start_on_cluster()

    def _start_on_cluster(self) -> None:
        """Claim queued runs for this process while slots are free; Ray trains them."""
        if self.cluster.inbox is None:
            return  # not connected: the queue waits as it is
        per_owner = classroom.running_cap()
        while not self._closing:
            run_id = self.store.claim_next(os.getpid(), self.max_concurrent, per_owner)
            if run_id is None:
                return
            self.cluster.start(run_id)

    def _reap(self) -> None:
        for run_id, job in list(self._jobs.items()):
            rc = job.proc.poll()
            if rc is None:
                continue
            del self._jobs[run_id]
            job.close_pipes()
            self._record_exit(job, rc)
        for w in list(self._spares):
            if w.proc.poll() is not None and w in self._spares:  # _warm_failed may clear it
                self._spares.remove(w)
                self._retire(w)
                if not w.ready:
                    self._warm_failed(f"a warm worker exited with code {w.proc.returncode} "
                                      "while starting")

    def _record_exit(self, job: _Job, rc: int) -> None:
        """The process is gone: if it did not record how the run ended, say why."""
        try:
            run = self.store.get_run(job.run_id)
        except RunNotFound:
            return
        if run.status not in ("queued", "running"):
            return
        if run.status == "queued":
            if run.pid not in (job.proc.pid, os.getpid()):
                return  # someone else holds it now
            if job.kind == "warm" and job.run_id not in self._requeued:
                # The worker died before it could start the run: not the run's fault.
                self._requeued.add(job.run_id)
                self.store.set_pid(job.run_id, None)
                self._warm_failed(f"a warm worker exited with code {rc} before starting "
                                  f"run {job.run_id}")
                return
        rel = f"{self.store.runs_dir / job.run_id / PROCESS_LOG}"
        if run.stop_requested:
            status, error = "stopped", FORCED_STOP_MESSAGE
        elif rc < 0:
            hint = (" (often the machine running out of memory)"
                    if -rc == signal.SIGKILL else "")
            status, error = "interrupted", (
                f"Its training process was killed by {_signal_name(rc)}{hint} before it "
                "finished; the metrics up to then are kept.")
        else:
            status, error = "failed", (
                f"Its training process exited (code {rc}) without recording a result; "
                f"see {rel}.")
        self.store.finish_run(job.run_id, status, None, error)

    def _escalate(self) -> None:
        now = time.monotonic()
        for job in self._jobs.values():
            if job.kill_at is not None and now >= job.kill_at:
                self._signal_group(job.proc.pid, signal.SIGKILL)
                job.kill_at = now + self.kill_grace_s
            elif job.stop_at is not None and job.kill_at is None and now >= job.stop_at:
                self._signal_group(job.proc.pid, signal.SIGTERM)
                job.kill_at = now + self.kill_grace_s
        for run_id, (pid, term_at, kill_at) in list(self._foreign_stops.items()):
            try:
                run = self.store.get_run(run_id)
            except RunNotFound:
                run = None
            if run is None or run.status != "running" or run.pid != pid or not _is_ours(pid):
                del self._foreign_stops[run_id]
            elif kill_at is not None and now >= kill_at:
                _kill(pid, signal.SIGKILL)
                del self._foreign_stops[run_id]
            elif kill_at is None and now >= term_at:
                _kill(pid, signal.SIGTERM)
                self._foreign_stops[run_id] = (pid, term_at, now + self.kill_grace_s)

    @staticmethod
    def _signal_group(pid: int, sig: int) -> None:
        try:
            os.killpg(pid, sig)  # start_new_session made the job its own group leader
        except (ProcessLookupError, PermissionError):
            _kill(pid, sig)

    def _free_gpu(self) -> int | None:
        if not self._gpus:
            return None
        used = {j.gpu for j in self._jobs.values()}
        return next((g for g in self._gpus if g not in used), -1)

    def _start_queued(self) -> None:
        if self.cluster is not None:
            return self._start_on_cluster()
        per_owner = classroom.running_cap()  # the teacher may edit the file at any time
        while not self._closing:
            gpu = self._free_gpu()
            if gpu == -1:
                return  # every GPU is busy with one of our runs
            worker = self._take_spare()
            pid = worker.proc.pid if worker else os.getpid()
            run_id = self.store.claim_next(pid, self.max_concurrent, per_owner)
            if run_id is None:
                if worker is not None:
                    self._spares.insert(0, worker)
                return
            job = self._hand_to_worker(run_id, worker, gpu) if worker else None
            if job is None:
                job = self._start_cold(run_id, gpu)
            if job is not None:
                self._jobs[run_id] = job

    def _take_spare(self) -> _Worker | None:
        if not self.warm:
            return None
        while self._spares:
            ready = [w for w in self._spares if w.ready]
            w = ready[0] if ready else self._spares[0]  # oldest is nearest to ready
            self._spares.remove(w)
            if w.proc.poll() is None:
                return w
            self._retire(w)
        return None

    def _hand_to_worker(self, run_id: str, w: _Worker, gpu: int | None) -> _Job | None:
        try:
            w.proc.stdin.write(f"{run_id} {'-' if gpu is None else gpu}\n".encode())
            w.proc.stdin.flush()
            w.proc.stdin.close()
        except (BrokenPipeError, OSError, ValueError):
            self._retire(w)
            return None  # fall through to a cold start; the claim is ours still
        self.store.set_pid(run_id, w.proc.pid)
        return _Job(run_id, w.proc, "warm", time.monotonic(), gpu)

    def _start_cold(self, run_id: str, gpu: int | None) -> _Job | None:
        env = dict(self._env)
        if gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = str(gpu)
        logf = None
        try:
            run_dir = self.store.run_dir(run_id, create=True)
            logf = open(run_dir / PROCESS_LOG, "ab")
            proc = subprocess.Popen(
                [sys.executable, "-m", "llama_core", "train", "--run-id", run_id,
                 "--db", str(self.store_path), "--json"],
                stdin=subprocess.DEVNULL, stdout=logf, stderr=logf, env=env,
                start_new_session=True, close_fds=True)
        except OSError as e:
            if logf is not None:
                logf.close()
            self.store.finish_run(run_id, "failed", None,
                                  f"Its training process could not be started ({e}); check "
                                  "that the machine has free memory and processes.")
            return None
        self.store.set_pid(run_id, proc.pid)
        return _Job(run_id, proc, "cold", time.monotonic(), gpu, log=logf)

    # -- warm workers --

    def _starting(self) -> bool:
        """Is a run we just started still on its way to its first metric? Booting a
        replacement worker (imports, ~3 CPU-s) then would slow exactly that moment."""
        now = time.monotonic()
        for job in self._jobs.values():
            if job.reported or now - job.started > SPAWN_DEFER_S:
                continue
            try:
                job.reported = self.store.get_run(job.run_id).steps > 0
            except RunNotFound:
                job.reported = True
            if not job.reported:
                return True
        return False

    def _refill_spares(self) -> None:
        if not self.warm or self._closing or len(self._spares) >= self.warm_spares:
            return
        target = self.warm_spares
        if self._starting():  # keep spares only for slots a submit could use right now
            target = min(target, max(0, self.max_concurrent - len(self._jobs)))
        while len(self._spares) < target:
            try:
                self._spares.append(self._spawn_worker())
            except OSError as e:
                self._warm_failed(f"a warm worker could not be started ({e})")
                return

    def _spawn_worker(self) -> _Worker:
        self.store.runs_dir.mkdir(parents=True, exist_ok=True)
        with open(self.store.runs_dir / WORKER_LOG, "ab") as logf:
            proc = subprocess.Popen(
                [sys.executable, "-c", _WORKER_BOOT, "--db", str(self.store_path)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=logf, env=self._env,
                start_new_session=True, close_fds=True)
        os.set_blocking(proc.stdout.fileno(), False)
        return _Worker(proc)

    def _read_readiness(self) -> None:
        for w in self._spares:
            if w.ready:
                continue
            try:
                data = os.read(w.proc.stdout.fileno(), 64)
            except (BlockingIOError, InterruptedError):
                continue
            except (OSError, ValueError):
                continue
            if b"ready" in data:
                w.ready = True
                self._warm_failures = 0

    def _warm_failed(self, why: str) -> None:
        self._warm_failures += 1
        log.warning("%s (see %s)", why, self.store.runs_dir / WORKER_LOG)
        if self._warm_failures >= 3 and self.warm:
            log.warning("warm workers keep failing; starting runs as plain subprocesses")
            self.warm = False
            for w in self._spares:
                self._retire(w)
            self._spares.clear()

    def _retire(self, w: _Worker) -> None:
        """Let an idle worker go: closing its stdin tells it there is no run for it."""
        for f in (w.proc.stdin, w.proc.stdout):
            try:
                if f is not None:
                    f.close()
            except OSError:
                pass
        if w.proc.poll() is None:
            try:
                w.proc.wait(timeout=0.05)
            except subprocess.TimeoutExpired:
                self._signal_group(w.proc.pid, signal.SIGKILL)
                try:
                    w.proc.wait(timeout=2)
                except subprocess.TimeoutExpired:
                    pass


def _is_ours(pid: int) -> bool:
    """Only signal a pid that is still a Llama Lab training process (pids get reused)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"llama_core" in f.read()
    except OSError:
        return pid_alive(pid)


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


__all__ = ["JobManager", "admit", "available_cores", "NotYourRun"]
