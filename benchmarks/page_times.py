"""How long one page view takes on an idle server, page by page.

Starts `streamlit run dashboard.py` on a fresh runs folder (or uses --url), opens one
websocket tab (streamlit_client.StreamlitTab) and visits every page of the menu
``--repeat`` + 1 times in one session, as the sidebar does. The first visit of a page
pays its imports and caches; the median of the others is the steady cost of a view:
the server's answer time, request sent to script_finished received.

    python benchmarks/page_times.py
    python benchmarks/page_times.py --repeat 5 --json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from load_classroom import start_server, stop_server  # noqa: E402
from streamlit_client import StreamlitTab  # noqa: E402


async def measure(url: str, repeat: int) -> dict[str, dict]:
    tab = StreamlitTab(url)
    try:
        await tab.open("")
        out = {}
        for path in sorted(tab.pages, key=lambda p: (p != "", p)):
            times = [(await tab.navigate(path)).seconds for _ in range(repeat + 1)]
            out[path or "start"] = {"first_s": round(times[0], 3),
                                    "median_s": round(statistics.median(times[1:]), 3)}
        return out
    finally:
        await tab.close()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3, help="views per page after the first")
    ap.add_argument("--url", help="an already running server")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    proc = None
    url = args.url
    if url is None:
        tmp = Path(tempfile.mkdtemp(prefix="llama-lab-pages-"))
        (tmp / "runs").mkdir()
        proc, url = start_server(tmp / "runs", 1, None, tmp / "server.log")
    try:
        report = asyncio.run(measure(url, max(1, args.repeat)))
    finally:
        if proc is not None:
            stop_server(proc)
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        for page, t in report.items():
            print(f"{page:>10}: first {t['first_s']:.3f} s, then median {t['median_s']:.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
