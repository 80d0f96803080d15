"""What a browser may name and touch: no server file ever becomes a corpus (issue 11,
class 1), and a student can watch another student's run but not stop it (class 3).

The library half checks the one gate every dashboard submission goes through (the
dashboard's JobManager, ``offered_corpora_only=True``) and the owner check in
``JobManager.stop``; the browser half drives the real server in Chromium."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from playwright.sync_api import expect

from llama_core.presets import build_configs
from llama_core.corpora import (BUILTINS, check_offered, corpus_text, is_offered,
                                save_upload)
from llama_core.errors import CorpusError, UserError
from llama_core.lab.jobs import JobManager, NotYourRun
from llama_core.lab.store import RunStore

REPO = Path(__file__).resolve().parent.parent
SECRET = "SECRET-4f1c " + "the server's private words, never for a browser.\n" * 40
STUDENT_A, STUDENT_B = "s-aaaaaaaaaa", "s-bbbbbbbbbb"


@pytest.fixture
def secret_file(tmp_path) -> Path:
    path = tmp_path / "private" / "secret.txt"
    path.parent.mkdir()
    path.write_text(SECRET)
    return path


@pytest.fixture
def uploads(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "uploads"
    monkeypatch.setenv("LLAMA_LAB_UPLOADS", str(folder))
    return folder


def fifo(tmp_path) -> Path:
    """A named pipe: opening it for reading blocks until a writer comes, so any code
    that opens it hangs, and a bounded call tells opened from not opened."""
    path = tmp_path / "blocks-if-opened.txt"
    os.mkfifo(path)
    return path


def returns_within(fn, seconds: float = 20.0):
    """Run fn in a thread; its exception or result, or fail if it blocked (opened the
    pipe)."""
    box: dict = {}

    def body():
        try:
            box["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - handed back to the test
            box["error"] = e

    t = threading.Thread(target=body, daemon=True)
    t.start()
    t.join(seconds)
    if t.is_alive():
        raise AssertionError("the call blocked: it opened the named pipe")
    return box


# --- Class 1: the corpus a browser may name -------------------------------------------

@pytest.mark.parametrize("name", [*BUILTINS, "Shakespeare", "upload:0123456789abcdef"])
def test_offered_names_pass(name):
    assert is_offered(name) and check_offered(name)


@pytest.mark.parametrize("name", ["/etc/passwd", "../../etc/passwd", "data/shakespeare.txt",
                                  "~/notes.txt", "shakespeare.txt", "upload:../../etc",
                                  "upload:0123456789ABCDEF", "upload:0123", "wikipedia",
                                  "", None, 3, ["shakespeare"]])
def test_anything_else_is_refused_with_the_same_sentence(name):
    with pytest.raises(CorpusError) as e:
        check_offered(name)
    assert str(e.value) == str(pytest.raises(CorpusError, check_offered, "/x").value)


def test_the_dashboards_manager_never_opens_a_path(tmp_path, secret_file):
    """A path from a page is refused before any file is opened (a named pipe would
    block), with one sentence that is the same for a real file and a missing one, so
    it tells nothing about the server's files; no run is created."""
    manager = JobManager(tmp_path / "runs" / "llama_lab.db", max_concurrent=1, warm=False,
                         offered_corpora_only=True)
    try:
        sentences = set()
        for path in (secret_file, tmp_path / "missing.txt", fifo(tmp_path),
                     secret_file.parent):
            model, train = build_configs("tiny", {"corpus": str(path), "steps": 2})
            box = returns_within(lambda: manager.submit(model, train, owner=STUDENT_A))
            assert isinstance(box.get("error"), CorpusError), box
            sentences.add(str(box["error"]))
        assert len(sentences) == 1
        (sentence,) = sentences
        assert "path" in sentence and str(tmp_path) not in sentence
        assert manager.store.list_runs() == []
    finally:
        manager.shutdown()


def test_a_library_manager_still_trains_on_a_path(tmp_path, secret_file):
    """The command line and scripts keep their paths: only the browser-facing gate
    refuses them."""
    with JobManager(tmp_path / "runs" / "llama_lab.db", max_concurrent=1,
                    warm=False) as manager:
        model, train = build_configs("tiny", {"corpus": str(secret_file), "steps": 2,
                                              "eval_interval": 1, "eval_batches": 1})
        run_id = manager.submit(model, train)
        assert manager.wait(run_id, timeout=120) == "finished"


def test_an_upload_is_kept_by_its_hash_and_trains(tmp_path, uploads):
    text = "To be, or not to be, that is the question.\n" * 40
    name = save_upload(text.encode(), "hamlet.txt")
    assert name.startswith("upload:") and len(name) == len("upload:") + 16
    assert save_upload(text.encode(), "again.txt") == name  # the same text, kept once
    assert [p.name for p in uploads.iterdir()] == [name.removeprefix("upload:") + ".txt"]
    assert corpus_text(name) == text
    with pytest.raises(CorpusError, match="no uploaded corpus"):
        corpus_text("upload:ffffffffffffffff")
    with pytest.raises(CorpusError, match="not valid UTF-8"):
        save_upload("héllo wörld ".encode("latin-1") * 200, "latin.txt")
    with JobManager(tmp_path / "runs" / "llama_lab.db", max_concurrent=1, warm=False,
                    offered_corpora_only=True) as manager:
        model, train = build_configs("tiny", {"corpus": name, "steps": 2,
                                              "eval_interval": 1, "eval_batches": 1})
        run_id = manager.submit(model, train, owner=STUDENT_A)
        assert manager.wait(run_id, timeout=120) == "finished"
        assert manager.store.get_run(run_id).model_config["vocab_size"] == len(set(text))


def test_a_sweep_with_one_path_queues_nothing(tmp_path, secret_file):
    """Every planned run is admitted before any is queued: no half sweep is left."""
    from llama_core.lab.sweeps import parse_variant, plan_sweep, submit_plan

    plan = plan_sweep("tiny", {"steps": 2}, [parse_variant("norm=layernorm"),
                                             parse_variant(f"corpus={secret_file}")], [0])
    with JobManager(tmp_path / "runs" / "llama_lab.db", max_concurrent=1, warm=False,
                    offered_corpora_only=True) as manager:
        with pytest.raises(CorpusError):
            submit_plan(manager, plan, owner=STUDENT_A)
        assert manager.store.list_runs() == []


def classroom_file(tmp_path, corpora: list[str]) -> Path:
    path = tmp_path / "classroom.toml"
    path.write_text("[classroom]\ncorpora = [" + ", ".join(f'"{c}"' for c in corpora)
                    + "]\n")
    return path


def test_a_classroom_checks_its_corpora_before_opening_a_file(tmp_path, uploads,
                                                             monkeypatch):
    """In classroom mode the allow-list is checked first, on the command line too: a
    named pipe given as the corpus is refused at once, not opened."""
    pipe = fifo(tmp_path)
    settings = classroom_file(tmp_path, ["shakespeare"])
    env = {**os.environ, "LLAMA_LAB_CLASSROOM": str(settings)}
    done = subprocess.run([sys.executable, "-m", "llama_core", "train", "--preset", "tiny",
                           "--corpus", str(pipe), "--steps", "1",
                           "--db", str(tmp_path / "runs" / "llama_lab.db")],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "not open in this classroom" in done.stderr and "Traceback" not in done.stderr
    # Uploads are open only when the teacher lists "uploads".
    name = save_upload(("Some words of our own. " * 60).encode(), "own.txt")
    monkeypatch.setenv("LLAMA_LAB_CLASSROOM", str(settings))
    with JobManager(tmp_path / "runs" / "llama_lab.db", max_concurrent=1, warm=False,
                    offered_corpora_only=True) as manager:
        model, train = build_configs("tiny", {"corpus": name, "steps": 2})
        with pytest.raises(UserError, match="not open in this classroom"):
            manager.submit(model, train, owner=STUDENT_A)
        settings.write_text('[classroom]\ncorpora = ["shakespeare", "uploads"]\n')
        os.utime(settings, (time.time() + 5, time.time() + 5))  # a new mtime for the cache
        model, train = build_configs("tiny", {"corpus": name, "steps": 2,
                                              "eval_interval": 1, "eval_batches": 1})
        run_id = manager.submit(model, train, owner=STUDENT_A)
        assert manager.wait(run_id, timeout=120) == "finished"


# --- Class 3: one student cannot stop another's run -------------------------------------

def test_only_the_owner_may_stop_a_run(tmp_path):
    db = tmp_path / "runs" / "llama_lab.db"
    store = RunStore(db)
    # Claimed by this process (as the command line's own train is), so no manager starts it.
    run_id = store.create_run(*build_configs("tiny"), owner=STUDENT_A, pid=os.getpid())
    with JobManager(db, max_concurrent=1, warm=False) as manager:
        with pytest.raises(NotYourRun, match="someone else"):
            manager.stop(run_id, on_behalf_of=STUDENT_B)
        run = store.get_run(run_id)
        assert run.status == "queued" and not store.stop_requested(run_id)
        assert manager.stop(run_id, on_behalf_of=STUDENT_A) == "stopped"
    other = store.create_run(*build_configs("tiny"), owner=STUDENT_B, pid=os.getpid())
    with JobManager(db, max_concurrent=1, warm=False) as manager:
        assert manager.stop(other) == "stopped"  # the operator (command line, teacher)


# --- Through the real server, in Chromium ------------------------------------------------

@pytest.mark.browser
def test_a_custom_variant_cannot_train_on_a_server_file(tmp_path, page, secret_file,
                                                        uploads):
    from conftest import running_dashboard
    from helpers_browser import assert_no_exception, open_page, screenshot, wait_for_app

    runs = tmp_path / "runs"
    runs.mkdir()
    with running_dashboard(runs, "hardening-corpus-server.log") as url:
        open_page(page, f"{url}/ablate")
        expect(page.get_by_role("heading", name="Ablations")).to_be_visible()
        box = page.locator(".st-key-ab_custom textarea")
        box.fill(f"corpus={secret_file}")
        box.press("Control+Enter")
        wait_for_app(page)
        # The page refuses at once: no Start button to press.
        expect(page.locator(".st-key-ab_start")).to_have_count(0)
        assert_no_exception(page)
        screenshot(page, "hardening-corpus-path-refused")
        expect(page.get_by_test_id("stAlertContentError").filter(
            has_text="a path or any other name is not accepted here")).to_have_count(1)
        assert "SECRET-4f1c" not in page.content()
        alerts = " ".join(page.locator("[data-testid='stAlert']").all_inner_texts())
        assert str(secret_file) not in alerts
    assert RunStore(runs / "llama_lab.db").list_runs() == []


@pytest.mark.browser
def test_a_student_sees_another_students_run_read_only(tmp_path, browser):
    from conftest import running_dashboard
    from helpers_browser import assert_no_exception, open_page, screenshot, wait_for_app

    runs = tmp_path / "runs"
    runs.mkdir()
    store = RunStore(runs / "llama_lab.db")
    model, train = build_configs("tiny", {"time_budget": 300.0, "steps": 1_000_000,
                                          "eval_interval": 20})
    run_id = store.create_run(model, train, owner=STUDENT_A, name="Ann's run")
    try:
        with running_dashboard(runs, "hardening-owner-server.log") as url:
            tabs = {}
            for student in (STUDENT_B, STUDENT_A):
                ctx = browser.new_context(viewport={"width": 1280, "height": 720})
                ctx.add_cookies([{"name": "llama_lab_student", "value": student,
                                  "url": url}])
                tabs[student] = ctx.new_page()
                tabs[student].set_default_timeout(60_000)
            # The server starts its job manager with the first page anyone opens.
            open_page(tabs[STUDENT_A], f"{url}/train?run={run_id}")
            deadline = time.monotonic() + 90
            while store.get_run(run_id).status != "running":
                assert time.monotonic() < deadline, "the run never started"
                time.sleep(0.5)

            other = tabs[STUDENT_B]
            open_page(other, f"{url}/train?run={run_id}")
            expect(other.get_by_text("only they or the teacher can stop it")).to_be_visible()
            expect(other.locator(".st-key-tr_stop")).to_have_count(0)
            screenshot(other, "hardening-someone-elses-run")
            assert store.get_run(run_id).status == "running"

            owner = tabs[STUDENT_A]
            open_page(owner, f"{url}/train?run={run_id}")
            owner.locator(".st-key-tr_stop button").click()
            wait_for_app(owner)
            assert_no_exception(owner)
            deadline = time.monotonic() + 60
            while store.get_run(run_id).status == "running":
                assert time.monotonic() < deadline, "the owner's Stop did not stop the run"
                time.sleep(0.5)
            assert store.get_run(run_id).status == "stopped"
            for tab in tabs.values():
                tab.context.close()
    finally:
        if store.get_run(run_id).status in ("queued", "running"):
            store.request_stop(run_id)


@pytest.mark.browser
def test_a_student_trains_on_a_text_they_upload(tmp_path, page, uploads):
    """The one way a browser brings its own corpus: an upload, kept by its hash."""
    import re

    from conftest import running_dashboard
    from helpers_browser import (assert_no_exception, open_page, press_launch, screenshot,
                                 wait_for_app)

    runs = tmp_path / "runs"
    runs.mkdir()
    own = tmp_path / "sonnets.txt"
    own.write_text("Shall I compare thee to a summer's day?\n" * 60)
    with running_dashboard(runs, "hardening-upload-server.log") as url:
        open_page(page, f"{url}/train")
        expect(page.get_by_role("heading", name="Build & train")).to_be_visible()
        page.locator(".st-key-tr_upload input[type='file']").set_input_files(str(own))
        wait_for_app(page)
        assert_no_exception(page)
        expect(page.locator(".st-key-tr_corpus input")).to_have_value(
            "uploaded: sonnets.txt")
        screenshot(page, "hardening-upload-chosen")
        press_launch(page)
        run_id = re.search(r"[?&]run=([a-z0-9-]+)", page.url).group(1)
        run = RunStore(runs / "llama_lab.db").get_run(run_id)
        assert run.train_config["corpus"].startswith("upload:")
        assert run.model_config["vocab_size"] == len(set(own.read_text()))
        page.locator(".st-key-tr_stop button").click()
        wait_for_app(page)
