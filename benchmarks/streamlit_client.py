"""A browser tab without the browser: Streamlit's websocket protocol, spoken from Python.

A Streamlit page is a conversation over one websocket (`/_stcore/stream`): the tab sends a
`BackMsg` asking for a script run (which page, the query string, the widgets' values) and
the server answers with `ForwardMsg`s (the elements, one delta at a time, then
`script_finished`). This client sends exactly those messages, so the server does the
same work for it as for a real tab (a session per connection, a script run per click,
the live fragments' timed reruns) while the load generator itself costs almost nothing:
30 of them fit beside the server on a 2-core machine, which 30 Chromium tabs do not.

What it does not do is the browser's side: fetching the static JavaScript, laying out
and painting. Page times measured here are the server's answer time (request sent to
`script_finished` received), not what a student's screen shows.

    tab = StreamlitTab("http://127.0.0.1:8501")
    page = await tab.open("train")              # a fresh session, like typing the URL
    await tab.set("tr_steps", 20)               # a widget, by its key
    page = await tab.click("tr_launch")         # a button press: one rerun
    page = await tab.navigate("teacher")        # the sidebar: same session, new page
    await tab.close()
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import websockets
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

FINISHED = {ForwardMsg.FINISHED_SUCCESSFULLY, ForwardMsg.FINISHED_FRAGMENT_RUN_SUCCESSFULLY}
# The value field a widget's state travels in, by element type (Streamlit 1.67).
VALUE_FIELDS = {
    "button": "trigger_value", "form_submit_button": "trigger_value",
    "number_input": "double_value", "text_input": "string_value",
    "selectbox": "string_value", "radio": "string_value", "checkbox": "bool_value",
    "toggle": "bool_value", "text_area": "string_value",
}


class ProtocolError(RuntimeError):
    """The server closed the connection or broke the conversation."""


@dataclass
class Page:
    """What one script run drew: enough to find widgets and check for errors."""

    seconds: float                      # request sent -> script_finished received
    finished: int                       # ForwardMsg.ScriptFinishedStatus
    widgets: dict[str, tuple[str, str]] = field(default_factory=dict)  # key -> (id, type)
    headings: list[str] = field(default_factory=list)
    exceptions: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # st.error texts
    query_string: str | None = None     # set when the script changed st.query_params


class StreamlitTab:
    """One simulated browser tab: one websocket, one Streamlit session at a time."""

    def __init__(self, url: str, timeout: float = 120.0, cookies: dict | None = None):
        parts = urlsplit(url)
        self.cookies = dict(cookies or {})  # sent with every connection, as a browser does
        self.http_url = url.rstrip("/")
        self.ws_url = f"ws://{parts.netloc}{parts.path.rstrip('/')}/_stcore/stream"
        self.timeout = timeout
        self.ws = None
        self.pages: dict[str, str] = {}      # url pathname -> page_script_hash
        self.page_hash = ""
        self.query_string = ""
        self.states: dict[str, object] = {}  # widget id -> value (what the tab holds)
        self.widget_types: dict[str, str] = {}
        self.fragments: dict[str, float] = {}  # fragment id -> run_every seconds
        self.last = None

    # -- the connection ------------------------------------------------------------

    async def open(self, path: str = "", query: str = "") -> Page:
        """Open ``path`` in a fresh session, as typing the URL or reloading does."""
        await self.close()
        cookie = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        self.ws = await websockets.connect(
            self.ws_url, subprotocols=["streamlit"], max_size=None, origin=self.http_url,
            open_timeout=self.timeout,
            additional_headers={"Cookie": cookie} if cookie else None)
        self.states.clear()
        self.fragments.clear()
        self.query_string = query
        return await self._run(page_name=path)

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
            self.ws = None

    # -- what a student does ---------------------------------------------------------

    async def navigate(self, path: str, query: str = "") -> Page:
        """Switch page in the same session, as the sidebar does."""
        if path not in self.pages:
            raise ProtocolError(f"no page at /{path}; the app has {sorted(self.pages)}")
        self.states.clear()
        self.fragments.clear()
        self.query_string = query
        return await self._run(page_hash=self.pages[path])

    async def set(self, key: str, value) -> Page:
        """Give the widget with ``key`` a value (one rerun, like leaving the field)."""
        wid = self._widget(key)
        self.states[wid] = value
        return await self._run(page_hash=self.page_hash)

    async def click(self, key: str) -> Page:
        """Press the button with ``key`` (a trigger: sent once, then forgotten)."""
        wid = self._widget(key)
        return await self._run(page_hash=self.page_hash, trigger=wid)

    async def tick(self) -> list[Page]:
        """Run the page's live fragments once each, as the browser's timers do."""
        return [await self._run(page_hash=self.page_hash, fragment=fid)
                for fid in list(self.fragments)]

    async def read(self, seconds: float) -> list[Page]:
        """Stay on the page for ``seconds``, running live fragments on their schedule."""
        pages, end = [], time.monotonic() + seconds
        while True:
            every = min(self.fragments.values(), default=None)
            left = end - time.monotonic()
            if left <= 0:
                return pages
            if every is None or every > left:
                await asyncio.sleep(left)
                return pages
            await asyncio.sleep(every)
            pages += await self.tick()

    # -- the protocol ----------------------------------------------------------------

    def _widget(self, key: str) -> str:
        if self.last is None or key not in self.last.widgets:
            have = sorted(self.last.widgets) if self.last else []
            raise ProtocolError(f"no widget with key {key!r} on this page; it has {have}")
        return self.last.widgets[key][0]

    def _back_msg(self, page_name: str, page_hash: str, trigger: str | None,
                  fragment: str | None) -> bytes:
        msg = BackMsg()
        state = msg.rerun_script
        state.query_string = self.query_string
        state.page_name = page_name
        state.page_script_hash = page_hash
        if fragment:
            state.fragment_id = fragment
            state.is_auto_rerun = True
        state.context_info.timezone = "UTC"
        state.context_info.locale = "en-GB"
        state.context_info.url = f"{self.http_url}/{page_name}"
        for wid, value in self.states.items():
            self._encode(state.widget_states.widgets.add(), wid, value)
        if trigger:
            w = state.widget_states.widgets.add()
            w.id, w.trigger_value = trigger, True
        return msg.SerializeToString()

    def _encode(self, w, wid: str, value) -> None:
        w.id = wid
        kind = VALUE_FIELDS.get(self.widget_types.get(wid, ""), "string_value")
        if kind == "double_value":
            w.double_value = float(value)
        elif kind == "bool_value":
            w.bool_value = bool(value)
        else:
            w.string_value = str(value)

    async def _run(self, page_name: str = "", page_hash: str = "",
                   trigger: str | None = None, fragment: str | None = None) -> Page:
        if self.ws is None:
            raise ProtocolError("the tab is not open")
        t0 = time.monotonic()
        await self.ws.send(self._back_msg(page_name, page_hash, trigger, fragment))
        page = Page(seconds=0.0, finished=-1)
        while True:
            try:
                raw = await asyncio.wait_for(self.ws.recv(), self.timeout)
            except websockets.ConnectionClosed as e:
                raise ProtocolError(f"the server closed the connection ({e})") from None
            except TimeoutError:
                raise ProtocolError(f"no answer within {self.timeout:g} s") from None
            msg = ForwardMsg()
            msg.ParseFromString(raw)
            kind = msg.WhichOneof("type")
            if kind == "new_session":
                self.page_hash = msg.new_session.page_script_hash
                if not msg.metadata.run.fragment_ids:
                    self.fragments.clear()  # a full run sets up its timers afresh
            elif kind == "navigation":
                self.page_hash = msg.navigation.page_script_hash
                self.pages = {p.url_pathname: p.page_script_hash
                              for p in msg.navigation.app_pages}
            elif kind == "page_info_changed":
                self.query_string = page.query_string = msg.page_info_changed.query_string
            elif kind == "auto_rerun":
                self.fragments[msg.auto_rerun.fragment_id] = msg.auto_rerun.interval
            elif kind == "stop_auto_rerun":
                for fid in msg.stop_auto_rerun.fragment_ids:
                    self.fragments.pop(fid, None)
            elif kind == "delta" and msg.delta.WhichOneof("type") == "new_element":
                self._read_element(msg.delta.new_element, page)
            elif kind == "script_finished":
                if msg.script_finished == ForwardMsg.FINISHED_EARLY_FOR_RERUN:
                    # Superseded by a rerun the server already started: keep reading.
                    page = Page(seconds=0.0, finished=-1, query_string=page.query_string)
                    continue
                page.finished = msg.script_finished
                if page.finished not in FINISHED:
                    page.exceptions.append("the page's script did not compile")
                page.seconds = time.monotonic() - t0
                if fragment and self.last:  # a fragment redraws part of the page
                    page.widgets = {**self.last.widgets, **page.widgets}
                    page.headings = self.last.headings + page.headings
                self.last = page
                return page

    def _read_element(self, element, page: Page) -> None:
        kind = element.WhichOneof("type")
        if kind == "exception":
            page.exceptions.append(f"{element.exception.type}: {element.exception.message}")
        elif kind == "alert" and element.alert.format == element.alert.ERROR:
            page.errors.append(element.alert.body)
        elif kind == "heading":
            page.headings.append(element.heading.body)
        else:
            proto = getattr(element, kind, None) if kind else None
            wid = getattr(proto, "id", "") if proto is not None else ""
            if wid.startswith("$$ID-"):
                key = wid.split("-", 2)[2] if wid.count("-") >= 2 else ""
                # Keyed widgets end in "-<key>"; the hash in the middle has no dashes.
                if key and key != "None":
                    page.widgets[key] = (wid, kind)
                    self.widget_types[wid] = kind
