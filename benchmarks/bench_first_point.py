"""Launch click to the first point on the live chart, as a student's browser sees it.

    python benchmarks/bench_first_point.py                 # 4 launches, 1280 x 720
    python benchmarks/bench_first_point.py --launches 6 --width 1920 --height 1080

Starts the dashboard on a free port with an empty run store, opens Build & train in
headless Chromium (/usr/bin/chromium), picks the ``tiny`` preset and, per launch,
clicks Launch and times three moments from the click: the URL naming the run, the
live chart on the page, and its first training-loss point. They are noted by the page
itself, at every animation frame on the browser's clock, so no round trip to
Playwright delays them. Beside them, from the run store: when the run was stored and
started, and how far into training its first step ended. Each run is stopped before
the next launch. The first launch of a fresh server pays its first-draw costs; later
ones show a warm server.

Run it on a quiet machine: Chromium, the server and the training process share its
cores, so anything else running slows all three.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "tests"))

from helpers_browser import (CHROMIUM, CHROMIUM_ARGS, first_point_seen, wait_for_app,  # noqa: E402
                             wait_for_health, watch_first_point)
from llama_core.lab.store import RunStore  # noqa: E402

TRAINING_TRACE = "training loss, each step"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def one_launch(page, url: str, store: RunStore) -> dict:
    page.goto(f"{url}/train")
    wait_for_app(page)
    page.wait_for_timeout(2000)  # let the builder's charts settle before the click
    watch_first_point(page, TRAINING_TRACE)
    click_wall = time.time()
    page.locator(".st-key-tr_launch button").first.click()
    seen = first_point_seen(page)
    run_id = re.search(r"[?&]run=([^&]+)", page.url).group(1)
    run = store.get_run(run_id)
    first_step = store.step_losses(run_id)[0]
    page.locator(".st-key-tr_stop button").first.click()
    page.wait_for_timeout(2000)
    return {"url_s": seen["url"], "chart_s": seen["chart"], "point_s": seen["point"],
            "stored_s": run.created - click_wall,
            "started_s": (run.started or run.created) - click_wall,
            "first_step_s": float(first_step[1])}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--launches", type=int, default=4)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=720)
    args = parser.parse_args(argv)
    from playwright.sync_api import sync_playwright

    runs = Path(tempfile.mkdtemp(prefix="first-point-"))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "dashboard.py", "--server.headless",
         "true", "--server.port", str(port), "--server.fileWatcherType", "none",
         "--browser.gatherUsageStats", "false"],
        cwd=REPO_ROOT, env=dict(os.environ, LLAMA_LAB_RUNS=str(runs)),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        if not wait_for_health(url):
            print("error: the dashboard did not start within 60 s", file=sys.stderr)
            return 1
        store = RunStore(runs / "llama_lab.db")
        print(f"{args.launches} launches of the tiny preset, Chromium at {args.width}x"
              f"{args.height}, load before {os.getloadavg()[0]:.1f}")
        print("launch | URL names the run | chart drawn | first point | run stored | "
              "run started | first step ended (training clock)")
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                        args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": args.width, "height": args.height})
            page.goto(f"{url}/train")
            wait_for_app(page)
            page.locator(".st-key-tr_preset input").click()  # the preset stays for the session
            page.get_by_role("option", name="tiny", exact=True).click()
            wait_for_app(page)
            for i in range(args.launches):
                t = one_launch(page, url, store)
                print(f"{i + 1} | {t['url_s']:.2f} s | {t['chart_s']:.2f} s | "
                      f"{t['point_s']:.2f} s | {t['stored_s']:.2f} s | {t['started_s']:.2f} s"
                      f" | {t['first_step_s']:.2f} s", flush=True)
            browser.close()
        print(f"load after {os.getloadavg()[0]:.1f}")
    finally:
        server.terminate()
        server.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
