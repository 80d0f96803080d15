"""Training on a Ray cluster: where a run trains changes, nothing else does.

The job manager (``llama_core.lab.jobs``) keeps everything that decides *which* run goes
next: admission, the fair queue, classroom caps, owners, stops. When a cluster is named
(``LLAMA_LAB_CLUSTER`` or ``--cluster``: a Ray address, or ``local`` to start Ray on this
machine) it hands each run it claims to ``RayExecutor.start`` instead of a local process,
and calls ``tick`` on every round of its loop.

A run becomes one Ray task (``_train_on_cluster``) asking for its resources: its CPU
threads, or one GPU. The task never opens the run store -- no shared filesystem is
assumed -- so everything comes back through Ray itself:

- a ``RunInbox`` actor, created by this manager, collects the task's reports (started,
  every evaluation with its sample, every step's loss a few times a second); ``tick``
  drains it into the SQLite store, so pages and live curves work unchanged;
- the stop flag goes the other way: ``tick`` copies the store's flag into the inbox,
  which the task reads between steps (without ever waiting for the answer);
- the run's corpus travels as one object in Ray's object store (put once per corpus);
- the task's return value is how the run ended, with the checkpoint's bytes, which the
  manager writes into the run's folder.

Ray keeps a CPU task's worker process for later tasks, so a run on the cluster does not
pay Python's and PyTorch's start-up again; that is safe because ``train`` sets every
seed and the thread count itself (the same seeds give the local executor's numbers bit
for bit). A GPU task gets a fresh process (``max_calls=1``), so CUDA memory is returned.

If the task's worker process is killed, or its node is lost, Ray fails the task (never
retried: a run is not silently trained twice) and the run is recorded interrupted with
the metrics that reached the store. A stop that the run does not obey within
``stop_grace_s`` cancels the task by force.

Ray is optional: without it the local executor works as before, and asking for a cluster
says how to install it.
"""

from __future__ import annotations

import os
import socket
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import machine_cores, model_from_dict, train_from_dict
from ..errors import UserError
from .store import REPO_ROOT, RunNotFound, RunStore
from .worker import CHECKPOINT, ERROR_LOG, FORCED_STOP_MESSAGE, STOP_POLL_S

ENV_CLUSTER = "LLAMA_LAB_CLUSTER"
LOCAL = "local"
PROBE_TIMEOUT_S = 3.0  # a cluster that does not answer a TCP connect in this long is down
RETRY_CONNECT_S = 10.0  # how often a manager tries an unreachable cluster again
LOST_MESSAGE = ("Its training process on the cluster was lost (the Ray worker was killed "
                "or its machine went away) before it finished; the metrics up to then are "
                "kept.")
INSTALL_MESSAGE = ("Training on a cluster needs Ray, which is not installed; install it "
                   "with `pip install ray` (the version pinned in requirements.txt), or "
                   "unset LLAMA_LAB_CLUSTER to train on this machine.")


class ClusterUnavailable(UserError):
    """Ray is missing, or the named cluster cannot be reached: no run is queued."""


def cluster_address(given: str | None = None) -> str | None:
    """The cluster to train on: ``given`` (``--cluster``), else ``$LLAMA_LAB_CLUSTER``;
    None (or empty) means local processes."""
    address = given if given is not None else os.environ.get(ENV_CLUSTER)
    address = (address or "").strip()
    return address or None


def _import_ray():
    try:
        import ray
    except ImportError:
        raise ClusterUnavailable(INSTALL_MESSAGE) from None
    return ray


def _host_port(address: str) -> tuple[str, int] | None:
    """``host:port`` of a Ray address (``ray://`` too), None when it names no port."""
    rest = address.split("://", 1)[-1].rstrip("/")
    host, sep, port = rest.rpartition(":")
    if not sep or not port.isdigit():
        return None
    return host.strip("[]") or "127.0.0.1", int(port)


def probe(address: str) -> None:
    """Refuse an address nothing answers on, in seconds (``ray.init`` would keep
    retrying for minutes)."""
    hp = _host_port(address)
    if hp is None:
        raise ClusterUnavailable(f"{address!r} is not a Ray cluster address; give HOST:PORT "
                                 f"of its head node (e.g. 10.0.0.5:6379), or {LOCAL!r} to "
                                 "start Ray on this machine.")
    try:
        with socket.create_connection(hp, timeout=PROBE_TIMEOUT_S):
            pass
    except OSError as e:
        raise ClusterUnavailable(
            f"The Ray cluster at {address} cannot be reached ({e.strerror or e}), so no new "
            "run was queued; queued runs wait until it is back (check the address in "
            f"{ENV_CLUSTER}, or unset it to train on this machine).") from None


# --- The remote side ------------------------------------------------------------------

class RunInbox:
    """The one place a run's reports meet the manager: tasks ``put``, the manager
    ``drain``s; the manager sets stops, tasks read them."""

    def __init__(self):
        self.reports: list[tuple[str, str, Any]] = []
        self.stops: set[str] = set()

    def put(self, run_id: str, kind: str, payload: Any) -> None:
        self.reports.append((run_id, kind, payload))

    def drain(self) -> list[tuple[str, str, Any]]:
        out, self.reports = self.reports, []
        return out

    def stop(self, run_id: str) -> None:
        self.stops.add(run_id)

    def should_stop(self, run_id: str) -> bool:
        return run_id in self.stops

    def forget(self, run_id: str) -> None:
        self.stops.discard(run_id)


class _Reporter:
    """The task's end of the inbox: reports in order, the stop flag read without
    blocking a step (one question in flight at a time, as a future: ``ray.wait`` and
    ``ray.get`` would count as blocking, and Ray lends a blocked task's CPU to another
    task, which would put one run too many on a node)."""

    def __init__(self, ray, inbox, run_id: str):
        self.ray, self.inbox, self.run_id = ray, inbox, run_id
        self.last = None
        self.asked = None
        self.asked_at = 0.0
        self.stop = False

    def put(self, kind: str, payload: Any) -> None:
        self.last = self.inbox.put.remote(self.run_id, kind, payload)

    def should_stop(self) -> bool:
        if self.stop:
            return True
        if self.asked is not None and self.asked.done():
            try:
                self.stop = bool(self.asked.result())
            except Exception:
                self.stop = False
            self.asked = None
        now = time.monotonic()
        if self.asked is None and now - self.asked_at >= STOP_POLL_S:
            self.asked = self.inbox.should_stop.remote(self.run_id).future()
            self.asked_at = now
        return self.stop

    def flush(self) -> None:
        """Wait until every report has reached the inbox (before the task returns)."""
        if self.last is not None:
            try:
                self.ray.get(self.last, timeout=60)
            except Exception:
                pass


def _train_on_cluster(run_id: str, model_dict: dict, train_dict: dict, corpus,
                      inbox, run_dir: str) -> dict:
    """Train one run on a cluster worker; return how it ended (with the checkpoint's
    bytes). ``run_dir`` is the manager's folder for the run, used only in messages."""
    import ray
    import torch

    from ..training import resolve_device, train
    from .worker import _crash_message, _short
    reporter = _Reporter(ray, inbox, run_id)
    outcome: dict[str, Any] = {"status": "failed", "result": None, "error": None,
                               "checkpoint": None, "traceback": None}
    try:
        model_cfg, train_cfg = model_from_dict(model_dict), train_from_dict(train_dict)
        device = resolve_device(train_cfg.device)
        reporter.put("running", {"device": str(device), "torch_version": torch.__version__,
                                 "pid": os.getpid(), "node": socket.gethostname()})
        with tempfile.TemporaryDirectory(prefix="llama-lab-") as tmp:
            result = train(model_cfg, train_cfg, corpus,
                           on_eval=lambda r: reporter.put("metric", r),
                           on_progress=lambda p: reporter.put("losses", p["losses"]),
                           should_stop=reporter.should_stop,
                           checkpoint_path=Path(tmp) / CHECKPOINT)
            if result.checkpoint is not None:
                outcome["checkpoint"] = Path(result.checkpoint).read_bytes()
        result.checkpoint = None
        outcome.update(status=result.status, result=result.to_json(), error=result.error)
    except UserError as e:
        outcome["error"] = str(e)
    except Exception as e:
        outcome["traceback"] = "".join(traceback.format_exception(e))
        outcome["error"] = _crash_message(e, Path(run_dir))
        if outcome["error"].startswith("Training crashed"):
            outcome["error"] = (f"Training crashed on the cluster ({_short(e)}); the full "
                                f"traceback is in {Path(run_dir) / ERROR_LOG}.")
    reporter.flush()
    return outcome


# --- The manager's side ---------------------------------------------------------------

@dataclass
class _RemoteJob:
    run_id: str
    ref: Any  # the task's ObjectRef
    started: float
    stop_at: float | None = None  # cancel the task by force after this moment
    cancelled: bool = False
    running: bool = False
    node: str | None = None  # where it trains, once it reported
    worker_pid: int | None = None


class RayExecutor:
    """Hands claimed runs to Ray and writes everything that comes back into the store.

    Not thread-safe on its own: the job manager calls it under its lock."""

    def __init__(self, address: str, store: RunStore, threads: int,
                 stop_grace_s: float = 10.0):
        self.address = address
        self.store = store
        self.threads = threads
        self.stop_grace_s = stop_grace_s
        self.jobs: dict[str, _RemoteJob] = {}
        self.inbox = None
        self.slots: int | None = None  # what the cluster can run at once, once connected
        self.gpus = 0
        self._started_ray = False
        self._next_try = 0.0
        self._error: ClusterUnavailable | None = None
        self._corpus_refs: dict[str, Any] = {}
        self._remote_train = None
        self._connect_lock = threading.Lock()
        try:
            self.ray = _import_ray()
        except ClusterUnavailable as e:  # every submit says how to install it
            self.ray, self._error, self._next_try = None, e, float("inf")

    def __repr__(self) -> str:
        return f"RayExecutor({self.address!r}, jobs={len(self.jobs)})"

    # -- connecting --

    def connect(self, force: bool = False) -> None:
        """Connect to the cluster (once); raise ClusterUnavailable in one sentence when
        it cannot be reached. A failure is remembered for ``RETRY_CONNECT_S``."""
        with self._connect_lock:
            if self.inbox is not None:
                return
            if not force and self._error is not None and time.monotonic() < self._next_try:
                raise self._error
            try:
                self._connect()
                self._error = None
            except ClusterUnavailable as e:
                self._error, self._next_try = e, time.monotonic() + RETRY_CONNECT_S
                raise

    def _connect(self) -> None:
        ray = self.ray
        if self.address != LOCAL:
            probe(self.address)
        if not ray.is_initialized():  # else: this process is connected already, reuse it
            env = {"env_vars": {"PYTHONPATH": os.pathsep.join(
                [str(REPO_ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(
                    os.pathsep) if p])}}
            if self.address == LOCAL:
                ray.init(num_cpus=machine_cores(), include_dashboard=False,
                         log_to_driver=False, runtime_env=env,
                         _node_ip_address="127.0.0.1")
            else:
                _send_token_if_any()
                try:
                    ray.init(address=self.address, log_to_driver=False, runtime_env=env)
                except Exception as e:
                    raise ClusterUnavailable(
                        f"Could not join the Ray cluster at {self.address} ({_first_line(e)})"
                        "; no new run was queued (this machine must be part of the cluster, "
                        "`ray start --address HEAD:PORT --num-cpus 0`, and hold the "
                        "cluster's token in ~/.ray/auth_token or $RAY_AUTH_TOKEN)."
                    ) from None
            self._started_ray = True
        resources = ray.cluster_resources()
        self.gpus = int(resources.get("GPU", 0))
        cpus = int(resources.get("CPU", 0))
        self.slots = self.gpus or max(1, cpus // max(1, self.threads))
        here = ray.get_runtime_context().get_node_id()
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
        self.inbox = ray.remote(num_cpus=0)(RunInbox).options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(here, soft=True)).remote()
        # Never retried: a run is not trained twice behind the student's back.
        self._remote_train = ray.remote(max_retries=0)(_train_on_cluster)

    def reachable(self) -> None:
        """Raise ClusterUnavailable unless the cluster answers (submit asks before
        queuing anything)."""
        self.connect()
        if self.address != LOCAL:
            probe(self.address)  # connected once, but is it still there?

    def where(self, run_id: str) -> tuple[str, int] | None:
        """(node name, worker pid) of a run training on the cluster, once it reported."""
        job = self.jobs.get(run_id)
        return None if job is None or job.worker_pid is None else (job.node, job.worker_pid)

    # -- runs --

    def start(self, run_id: str) -> None:
        """Submit a run this manager has claimed as a Ray task asking for its threads
        (or one GPU). A run that cannot train (its corpus gone since it was queued) is
        recorded failed; if Ray refuses the task, the claim is given back."""
        try:
            self._submit(run_id)
        except UserError as e:
            self.store.finish_run(run_id, "failed", None, str(e))
        except Exception:
            self.store.set_pid(run_id, None)  # queued as before, for a later round
            raise

    def _submit(self, run_id: str) -> None:
        run = self.store.get_run(run_id)
        train = run.train_config
        if train.get("threads") is None:
            train = {**train, "threads": self.threads}
        gpu = train.get("device") == "cuda" or (train.get("device") == "auto" and self.gpus)
        options = ({"num_gpus": 1, "num_cpus": 1, "max_calls": 1} if gpu
                   else {"num_cpus": train["threads"]})
        ref = self._remote_train.options(**options).remote(
            run_id, run.model_config, train, self._corpus_ref(train), self.inbox,
            str(self.store.run_dir(run_id)))
        self.jobs[run_id] = _RemoteJob(run_id, ref, time.monotonic())

    def _corpus_ref(self, train: dict):
        """The run's corpus -- text, tokenizer and tensors, exactly as a local run loads
        it -- in Ray's object store, put once per corpus."""
        from ..corpora import load_corpus
        tokenizer = train.get("tokenizer", "char")
        corpus = load_corpus(train["corpus"], tokenizer)
        key = (corpus.sha256, tokenizer)
        if key not in self._corpus_refs:
            self._corpus_refs[key] = self.ray.put(corpus)
        return self._corpus_refs[key]

    def stop(self, run_id: str) -> None:
        job = self.jobs.get(run_id)
        if job is not None and job.stop_at is None:
            job.stop_at = time.monotonic() + self.stop_grace_s
            self.inbox.stop.remote(run_id)

    def tick(self) -> None:
        """One round: store what the runs reported, follow stops, record ended runs."""
        if self.inbox is None:
            return
        self.drain()
        now = time.monotonic()
        for job in list(self.jobs.values()):
            try:
                run = self.store.get_run(job.run_id)
            except RunNotFound:
                run = None
            if run is None or run.status not in ("queued", "running"):
                # Stopped while it waited for a worker, or deleted: it must not train.
                self.ray.cancel(job.ref, force=True)
                self._forget(job)
                continue
            if run.stop_requested:
                self.stop(job.run_id)
            if job.stop_at is not None and now >= job.stop_at and not job.cancelled:
                self.ray.cancel(job.ref, force=True)
                job.cancelled = True
        if self.jobs:
            done, _ = self.ray.wait([j.ref for j in self.jobs.values()],
                                    num_returns=len(self.jobs), timeout=0)
            if done:
                self.drain()  # the last reports before the outcome
                by_ref = {j.ref: j for j in self.jobs.values()}
                for ref in done:
                    self._record(by_ref[ref])

    def drain(self) -> None:
        for run_id, kind, payload in self.ray.get(self.inbox.drain.remote(), timeout=30):
            try:
                if kind == "metric":
                    self.store.add_metric(run_id, payload)
                elif kind == "losses":
                    self.store.add_step_losses(run_id, payload)
                elif kind == "running":
                    job = self.jobs.get(run_id)
                    if not self.store.mark_running(run_id, os.getpid(), payload["device"],
                                                   payload["torch_version"]):
                        if job is not None:
                            self.ray.cancel(job.ref, force=True)
                            self._forget(job)
                    elif job is not None:
                        job.running = True
                        job.node, job.worker_pid = payload["node"], payload["pid"]
            except RunNotFound:
                pass  # deleted meanwhile: nothing to record

    def _record(self, job: _RemoteJob) -> None:
        """The task is over: record how the run ended, with its checkpoint."""
        self._forget(job)
        try:
            outcome = self.ray.get(job.ref)
        except self.ray.exceptions.RayTaskError as e:  # the wrapper itself failed
            self._write_error(job.run_id, str(e))
            self.store.finish_run(job.run_id, "failed", None,
                                  f"Training crashed on the cluster ({_first_line(e)}).")
            return
        except self.ray.exceptions.RayError:
            # Cancelled by force after a stop, or the worker or its node was lost.
            if job.stop_at is not None:
                self.store.finish_run(job.run_id, "stopped", None, FORCED_STOP_MESSAGE)
            else:
                self.store.finish_run(job.run_id, "interrupted", None, LOST_MESSAGE)
            return
        result = outcome["result"]
        if outcome["traceback"]:
            self._write_error(job.run_id, outcome["traceback"])
        if outcome["checkpoint"] is not None and result is not None:
            result["checkpoint"] = self._write_checkpoint(job.run_id, outcome["checkpoint"])
        self.store.finish_run(job.run_id, outcome["status"], result, outcome["error"])

    def _write_checkpoint(self, run_id: str, data: bytes) -> Path:
        path = self.store.run_dir(run_id, create=True) / CHECKPOINT
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
        return path

    def _write_error(self, run_id: str, text: str) -> None:
        try:
            with open(self.store.run_dir(run_id, create=True) / ERROR_LOG, "a",
                      encoding="utf-8") as f:
                f.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} on the cluster\n{text}\n")
        except OSError:
            pass

    def _forget(self, job: _RemoteJob) -> None:
        self.jobs.pop(job.run_id, None)
        if self.inbox is not None:
            self.inbox.forget.remote(job.run_id)

    def shutdown(self, timeout: float = 30.0) -> None:
        """Tasks on the cluster belong to this connection and end with it: a run still
        waiting for a worker goes back to the queue (for the next manager), a training
        one is stopped (it saves its checkpoint) and recorded; then disconnect if we
        connected."""
        if self.inbox is not None:
            self.drain()
            for job in list(self.jobs.values()):
                if job.running:
                    self.store.request_stop(job.run_id)
                    self.stop(job.run_id)
                else:
                    self.ray.cancel(job.ref, force=True)
                    self._forget(job)
                    self.store.set_pid(job.run_id, None)  # unclaimed: queued as before
            deadline = time.monotonic() + timeout
            while self.jobs and time.monotonic() < deadline:
                self.tick()
                time.sleep(0.1)
        if self.inbox is not None:
            try:
                self.ray.kill(self.inbox)
            except Exception:
                pass
        if self._started_ray:
            self.ray.shutdown()
        self.inbox = None


def _send_token_if_any() -> None:
    """Ray's clusters use token authentication by default, but a driver joining one sends
    its token only in token mode (``RAY_AUTH_MODE=token``, read when Ray's config loads):
    switch to it when a token is at hand and no mode was chosen, as ``ray start`` does
    (without it the join fails after half a minute of retries). Ray's own helper, of
    the pinned version; the variable alone where it is missing."""
    if os.environ.get("RAY_AUTH_MODE"):
        return
    try:
        from ray._private.authentication.authentication_token_setup import (
            maybe_enable_token_auth_if_token_available)
    except ImportError:
        if (os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH")
                or (Path.home() / ".ray" / "auth_token").is_file()):
            os.environ["RAY_AUTH_MODE"] = "token"
        return
    maybe_enable_token_auth_if_token_available(warn_if_disabled=False)


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    line = text[0] if text else type(e).__name__
    return line if len(line) <= 200 else line[:197] + "..."


__all__ = ["RayExecutor", "ClusterUnavailable", "cluster_address", "probe", "ENV_CLUSTER",
           "LOCAL", "LOST_MESSAGE", "INSTALL_MESSAGE"]
