"""Load check for a classroom: N students at once against one dashboard server.

Starts `streamlit run dashboard.py` (or uses --url) with a fresh runs folder, a job
limit (LLAMA_LAB_MAX_CONCURRENT) and a classroom settings file, then drives N student
sessions for a while. Each student opens Start, goes to Build & train, picks the tiny
preset, sets a small step count, presses Launch, opens the Teacher page and their run
on Compare, and then keeps moving between pages, "reading" each for 3-6 s while its live
parts refresh, and now and then reloading the tab, until the time is up.

Two kinds of student (--client):
  tab      Streamlit's own websocket protocol spoken from Python (streamlit_client.py):
           the server does the same work as for a browser tab (a session per tab, a
           script run per click, the live fragments' timed reruns), and the students
           cost almost no CPU, so 30 of them fit beside the server on 2 cores. Page
           time is the server's answer time (request to script_finished).
  browser  Playwright contexts in one headless Chromium: the real thing, rendering
           included, but each tab costs a browser's CPU; on a 2-core machine 30 of them
           starve the server they are measuring. Page time is navigation until the
           page has finished running and nothing is stale.

Reported: sessions, pages opened, page time p50/p95/max (and per page), live refreshes,
errors (Streamlit exceptions, timeouts, dropped connections, launches without a run id),
runs started/finished/failed and the most that waited at once, CPU seconds of the server
(its own), of its training processes and of the students, and the server's memory (VmRSS
from /proc: at start, peak, end, the peak of each minute; and its training workers').

    python benchmarks/load_classroom.py                  # 30 tabs, 120 s
    python benchmarks/load_classroom.py --client browser --sessions 8 --duration 60 --json

Exit status 0 only with zero errors and every run finished.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
HEADINGS = {"": "Llama Lab", "train": "Build & train", "teacher": "Teacher",
            "compare": "Compare runs"}
SETTINGS = """[classroom]
title = "Load check"
[caps]
d_model = 64
n_layers = 2
steps = 200
running_per_student = 1
queued_per_student = 2
"""


def rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_s(pids, children: bool = True) -> float:
    """User + system CPU seconds of these processes (and of their reaped children)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += sum(int(x) for x in f[11:15 if children else 13])
        except (OSError, IndexError, ValueError):
            pass
    return total / tick


def chromium_processes() -> list[int]:
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if b"chromium" in Path(f"/proc/{pid}/cmdline").read_bytes()[:200]:
                out.append(int(pid))
        except OSError:
            continue
    return out


def llama_processes() -> list[int]:
    """Training workers and runs (anything running llama_core but the server)."""
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"llama_core" in cmd and b"streamlit" not in cmd:
            out.append(int(pid))
    return out


class Sampler(threading.Thread):
    """Samples the server's RSS, its workers' RSS and the queue every half second."""

    def __init__(self, server_pid: int | None, store):
        super().__init__(daemon=True)
        self.server_pid, self.store = server_pid, store
        self.server = []
        self.workers = []
        self.queued_max = 0
        self.stop_event = threading.Event()

    def run(self):
        while not self.stop_event.is_set():
            if self.server_pid:
                self.server.append(rss_kb(self.server_pid))
            self.workers.append(sum(rss_kb(p) for p in llama_processes()))
            try:
                self.queued_max = max(self.queued_max,
                                      len(self.store.list_runs(status="queued")))
            except Exception:
                pass
            self.stop_event.wait(0.5)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(runs: Path, max_concurrent: int, settings: Path | None, log: Path):
    port = free_port()
    env = {**os.environ, "LLAMA_LAB_RUNS": str(runs), "PYTHONUNBUFFERED": "1",
           "LLAMA_LAB_MAX_CONCURRENT": str(max_concurrent)}
    if settings is not None:
        env["LLAMA_LAB_CLASSROOM"] = str(settings)
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "dashboard.py", "--server.headless",
         "true", "--server.port", str(port), "--server.address", "127.0.0.1",
         "--server.fileWatcherType", "none", "--browser.gatherUsageStats", "false"],
        cwd=REPO, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.read().decode().strip() == "ok":
                    return proc, url
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError(f"the server did not start; see {log}")


def stop_server(proc) -> None:
    for sig, wait_s in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        if proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, sig)
            proc.wait(timeout=wait_s)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            continue


async def wait_ready(page, heading: str, timeout_ms: int) -> None:
    await page.get_by_role("heading", name=heading).first.wait_for(timeout=timeout_ms)
    await page.wait_for_timeout(250)
    app = "[data-testid='stApp']"
    await page.locator(f"{app}[data-test-script-state='notRunning']").wait_for(
        state="attached", timeout=timeout_ms)
    await page.locator("[data-testid='stElementContainer'][data-stale='true']").first \
        .wait_for(state="detached", timeout=timeout_ms)


async def exceptions(page) -> list[str]:
    loc = page.locator("[data-testid='stException']")
    return await loc.all_inner_texts() if await loc.count() else []


class BrowserStudent:
    """One student in a Chromium context: every visit is a page load."""

    def __init__(self, n: int, browser, url: str, stats: dict, deadline: float,
                 steps: int, timeout_ms: int):
        self.n, self.browser, self.url, self.stats = n, browser, url, stats
        self.deadline, self.steps, self.timeout_ms = deadline, steps, timeout_ms
        self.run_id: str | None = None

    def error(self, what: str) -> None:
        self.stats["errors"].append(f"session {self.n}: {what}"[:500])

    async def visit(self, page, path: str) -> bool:
        t0 = time.monotonic()
        try:
            await page.goto(f"{self.url}/{path}", timeout=self.timeout_ms)
            await wait_ready(page, HEADINGS[path.split("?")[0]], self.timeout_ms)
        except Exception as e:
            self.error(f"{path}: {type(e).__name__}: {str(e).splitlines()[0]}")
            return False
        self.stats["page_s"].append(time.monotonic() - t0)
        self.stats["by_path"].setdefault(path.split("?")[0] or "start", []).append(
            time.monotonic() - t0)
        errs = await exceptions(page)
        if errs:
            self.error(f"{path}: Streamlit exception: {errs[0][:300]}")
            return False
        return True

    async def launch(self, page) -> None:
        try:
            box = page.locator(".st-key-tr_preset input")
            await box.click()
            await page.get_by_role("option", name="tiny", exact=True).click()
            await wait_ready(page, "Build & train", self.timeout_ms)
            steps = page.locator(".st-key-tr_steps input")
            await steps.fill(str(self.steps))
            await steps.press("Enter")
            await wait_ready(page, "Build & train", self.timeout_ms)
            await page.locator(".st-key-tr_launch button").first.click()
            await page.wait_for_url(re.compile(r"[?&]run=r[0-9a-f]+"),
                                    timeout=self.timeout_ms)
            self.run_id = re.search(r"[?&]run=(r[0-9a-f]+)", page.url).group(1)
            self.stats["launched"].append(self.run_id)
            errs = await exceptions(page)
            if errs:
                self.error(f"launch: Streamlit exception: {errs[0][:300]}")
        except Exception as e:
            alerts = page.locator("[data-testid='stAlertContentError']")
            shown = (await alerts.all_inner_texts()) if await alerts.count() else []
            self.error(f"launch: {type(e).__name__}: {str(e).splitlines()[0]}"
                       + (f" (page says: {shown[0][:200]})" if shown else ""))

    async def main(self) -> None:
        await asyncio.sleep(random.uniform(0, 3))  # students do not all click at once
        context = await self.browser.new_context(viewport={"width": 1280, "height": 800})
        page = await context.new_page()
        try:
            if await self.visit(page, ""):
                if await self.visit(page, "train"):
                    await self.launch(page)
            await self.visit(page, "teacher")
            if self.run_id:
                await self.visit(page, f"compare?runs={self.run_id}")
            cycle = ["", "teacher", "train"] + (
                [f"compare?runs={self.run_id}"] if self.run_id else [])
            i = 0
            while time.monotonic() < self.deadline:
                await asyncio.sleep(random.uniform(3, 6))
                if time.monotonic() >= self.deadline:
                    break
                await self.visit(page, cycle[i % len(cycle)])
                i += 1
        finally:
            await context.close()


async def drive(url: str, sessions: int, duration: float, steps: int, timeout_ms: int,
                stats: dict) -> None:
    from playwright.async_api import async_playwright
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                          headless=True)
        deadline = time.monotonic() + duration
        await asyncio.gather(*(BrowserStudent(i, browser, url, stats, deadline, steps,
                                              timeout_ms).main() for i in range(sessions)))
        await browser.close()


class TabStudent:
    """One student as a websocket tab: moves between pages in one session (as the
    sidebar does), runs the live parts while reading, and reloads now and then."""

    def __init__(self, n: int, url: str, stats: dict, deadline: float, steps: int,
                 timeout_s: float):
        from streamlit_client import StreamlitTab
        self.n, self.stats, self.deadline, self.steps = n, stats, deadline, steps
        # The student id a browser keeps in its cookie (ui.state.owner_id), so a reload
        # is the same student; the run store then tells whose each run is.
        self.student = "s-" + uuid.uuid4().hex[:10]
        self.tab = StreamlitTab(url, timeout=timeout_s,
                                cookies={"llama_lab_student": self.student})
        self.run_id: str | None = None

    def error(self, what: str) -> None:
        self.stats["errors"].append(f"session {self.n}: {what}"[:500])

    def record(self, path: str, page) -> bool:
        name = path.split("?")[0] or "start"
        self.stats["page_s"].append(page.seconds)
        self.stats["by_path"].setdefault(name, []).append(page.seconds)
        if page.exceptions:
            self.error(f"{path}: Streamlit exception: {page.exceptions[0][:300]}")
            return False
        return True

    async def visit(self, path: str, reload: bool = False) -> bool:
        name, _, query = path.partition("?")
        try:
            if reload or self.tab.ws is None:
                page = await self.tab.open(name, query)
            else:
                page = await self.tab.navigate(name, query)
        except Exception as e:
            self.error(f"{path}: {type(e).__name__}: {str(e)[:300]}")
            await self.tab.close()  # the next visit reconnects, as a reloaded tab does
            return False
        return self.record(path, page)

    async def read(self, seconds: float) -> None:
        try:
            for page in await self.tab.read(seconds):
                self.stats["live_s"].append(page.seconds)
                if page.exceptions:
                    self.error(f"live refresh: {page.exceptions[0][:300]}")
        except Exception as e:
            self.error(f"live refresh: {type(e).__name__}: {str(e)[:300]}")
            await self.tab.close()

    async def launch(self) -> None:
        try:
            await self.tab.set("tr_preset", "tiny")
            await self.tab.set("tr_steps", self.steps)
            page = await self.tab.click("tr_launch")
        except Exception as e:
            self.error(f"launch: {type(e).__name__}: {str(e)[:300]}")
            return
        found = re.search(r"(?:^|&)run=(r[0-9a-f]+)", page.query_string or "")
        if page.exceptions or not found:
            said = (page.exceptions or page.errors or ["nothing"])[0][:300]
            self.error(f"launch gave no run id (page says: {said})")
            return
        self.run_id = found.group(1)
        self.stats["launched"].append(self.run_id)
        self.stats["owners"][self.run_id] = self.student

    async def main(self) -> None:
        await asyncio.sleep(random.uniform(0, 3))  # students do not all click at once
        try:
            if await self.visit(""):
                if await self.visit("train"):
                    await self.launch()
            await self.visit("teacher")
            if self.run_id:
                await self.visit(f"compare?runs={self.run_id}")
            cycle = ["", "teacher", "train"] + (
                [f"compare?runs={self.run_id}"] if self.run_id else [])
            i = 0
            while time.monotonic() < self.deadline:
                await self.read(min(random.uniform(3, 6),
                                    max(0.0, self.deadline - time.monotonic())))
                if time.monotonic() >= self.deadline:
                    break
                await self.visit(cycle[i % len(cycle)], reload=(i % 4 == 3))
                i += 1
        finally:
            await self.tab.close()


async def drive_tabs(url: str, sessions: int, duration: float, steps: int,
                     timeout_ms: int, stats: dict) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    deadline = time.monotonic() + duration
    await asyncio.gather(*(TabStudent(i, url, stats, deadline, steps,
                                      timeout_ms / 1000).main() for i in range(sessions)))


def percentile(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    xs = sorted(xs)
    k = (len(xs) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def run_load(sessions: int = 30, duration: float = 120.0, max_concurrent: int = 1,
             steps: int = 20, runs_dir: Path | None = None, url: str | None = None,
             classroom: bool = True, finish_timeout: float = 600.0,
             timeout_ms: int = 120_000, client: str = "tab") -> dict:
    """Drive the load and return the report as a dict (also used by the CI tests)."""
    if client not in ("tab", "browser"):
        raise ValueError(f"client must be 'tab' or 'browser', not {client!r}")
    from llama_core.lab.store import RunStore
    tmp = Path(tempfile.mkdtemp(prefix="llama-lab-load-"))
    runs = Path(runs_dir) if runs_dir else tmp / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    settings = None
    if classroom:
        settings = tmp / "classroom.toml"
        settings.write_text(SETTINGS)
    proc = None
    if url is None:
        proc, url = start_server(runs, max_concurrent, settings, tmp / "server.log")
    store = RunStore(runs / "llama_lab.db")
    sampler = Sampler(proc.pid if proc else None, store)
    stats = {"page_s": [], "live_s": [], "errors": [], "launched": [], "by_path": {},
             "owners": {}}
    t0 = time.monotonic()
    try:
        sampler.start()
        rss_start = rss_kb(proc.pid) if proc else 0
        server_cpu0 = cpu_s([proc.pid], children=False) if proc else 0.0
        jobs_cpu0 = cpu_s([proc.pid]) - server_cpu0 if proc else 0.0
        self_cpu = [0.0]
        own_cpu0 = time.process_time()

        def watch_browsers():  # chromium processes come and go: keep the last total
            while not sampler.stop_event.is_set():
                self_cpu[0] = max(self_cpu[0], cpu_s(chromium_processes()))
                sampler.stop_event.wait(1.0)
        if client == "browser":
            threading.Thread(target=watch_browsers, daemon=True).start()
        drive_students = drive if client == "browser" else drive_tabs
        # In a thread of its own: the caller may already run an event loop (pytest with
        # Playwright's sync API does).
        failure: list[BaseException] = []

        def browse():
            try:
                asyncio.run(drive_students(url, sessions, duration, steps, timeout_ms,
                                           stats))
            except BaseException as e:  # reported by the caller's thread
                failure.append(e)
        driver = threading.Thread(target=browse, name="load-students")
        driver.start()
        driver.join()
        if failure:
            raise failure[0]
        driven_s = time.monotonic() - t0
        server_cpu = (cpu_s([proc.pid], children=False) - server_cpu0) if proc else 0.0
        students_cpu = self_cpu[0] if client == "browser" else (
            time.process_time() - own_cpu0)
        deadline = time.monotonic() + finish_timeout
        while time.monotonic() < deadline:
            if not store.list_runs(status=("queued", "running")):
                break
            time.sleep(0.5)
        sampler.stop_event.set()
        sampler.join(timeout=5)
        runs_all = store.list_runs()
        by_status: dict[str, int] = {}
        for r in runs_all:
            by_status[r.status] = by_status.get(r.status, 0) + 1
        rss_end = rss_kb(proc.pid) if proc else 0
        jobs_cpu = (cpu_s([proc.pid]) - cpu_s([proc.pid], children=False) - jobs_cpu0
                    if proc else 0.0)
    finally:
        sampler.stop_event.set()
        if proc is not None:
            stop_server(proc)
    pages = stats["page_s"]
    launched = set(stats["launched"])
    live = stats["live_s"]
    report = {
        "client": client, "sessions": sessions, "duration_s": duration,
        "driven_s": round(driven_s, 1),
        "max_concurrent": max_concurrent, "steps_per_run": steps,
        "pages": len(pages),
        "page_p50_s": round(statistics.median(pages), 2) if pages else None,
        "page_p95_s": round(percentile(pages, 0.95), 2) if pages else None,
        "page_max_s": round(max(pages), 2) if pages else None,
        "page_p95_by_path_s": {k: round(percentile(v, 0.95), 2)
                               for k, v in sorted(stats["by_path"].items())},
        "live_refreshes": len(live),
        "live_refresh_p95_s": round(percentile(live, 0.95), 2) if live else None,
        "cpu_s_while_browsing": {"server": round(server_cpu, 1),
                                 "students": round(students_cpu, 1),
                                 "cores": os.cpu_count()},
        "cpu_s_training": round(jobs_cpu, 1),  # the server's finished child processes
        "errors": len(stats["errors"]), "error_samples": stats["errors"][:10],
        "runs_launched": len(launched), "runs_by_status": by_status,
        "runs_unfinished": sorted(r.id for r in runs_all
                                  if r.id in launched and r.status != "finished"),
        # Tabs send their student's cookie: every run must be stored as theirs.
        "runs_with_wrong_owner": sorted(r.id for r in runs_all if r.id in stats["owners"]
                                        and r.owner != stats["owners"][r.id]),
        "queued_max": sampler.queued_max,
        "server_rss_mb": {"start": round(rss_start / 1024, 1),
                          "peak": round(max(sampler.server or [0]) / 1024, 1),
                          "end": round(rss_end / 1024, 1)},
        # Half-second samples, the highest of each minute: a leak shows as a slope.
        "server_rss_mb_by_minute": [round(max(sampler.server[i:i + 120]) / 1024)
                                    for i in range(0, len(sampler.server), 120)],
        "workers_rss_peak_mb": round(max(sampler.workers or [0]) / 1024, 1),
        "all_finished_s": round(time.monotonic() - t0, 1),
        "server_log": str(tmp / "server.log") if proc else None,
    }
    report["ok"] = (report["errors"] == 0 and report["runs_launched"] == sessions
                    and not report["runs_unfinished"] and not report["runs_with_wrong_owner"])
    return report


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--client", choices=("tab", "browser"), default="tab",
                    help="websocket tabs (light) or Chromium contexts (real rendering)")
    ap.add_argument("--sessions", type=int, default=30)
    ap.add_argument("--duration", type=float, default=120.0, help="seconds of browsing")
    ap.add_argument("--max-concurrent", type=int, default=1, help="the server's job limit")
    ap.add_argument("--steps", type=int, default=20, help="steps of each student's run")
    ap.add_argument("--url", help="an already running server (its runs folder: --runs)")
    ap.add_argument("--runs", type=Path, help="runs folder (default: a fresh temporary one)")
    ap.add_argument("--no-classroom", action="store_true",
                    help="start the server without classroom settings")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    report = run_load(args.sessions, args.duration, args.max_concurrent, args.steps,
                      args.runs, args.url, classroom=not args.no_classroom,
                      client=args.client)
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        for k, v in report.items():
            print(f"{k:>22}: {v}")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
