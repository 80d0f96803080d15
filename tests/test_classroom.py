"""Classroom mode: the settings file, limits enforced where runs are created (the
classroom decides, the store counts), fair queueing across students under the cap the
classroom sets, and the class's pooled findings."""

from __future__ import annotations

from pathlib import Path

import pytest

from llama_core.lab import classroom
from llama_core.lab.classroom import ClassroomError, class_findings, parse
from llama_core.presets import build_configs
from llama_core.lab.store import RunStore

REPO = Path(__file__).resolve().parent.parent
TINY = dict(context_window=16, d_model=32, n_layers=1, n_heads=2, steps=20)


def cfg(**changes):
    return build_configs("tiny", {**TINY, **changes})


@pytest.fixture
def room(tmp_path, monkeypatch, runs_dir):
    """Write a settings file, name it in LLAMA_LAB_CLASSROOM, return a store."""
    def make(text: str) -> RunStore:
        path = tmp_path / "classroom.toml"
        path.write_text(text)
        monkeypatch.setenv(classroom.ENV_CLASSROOM, str(path))
        return RunStore(runs_dir / "runs.db")
    return make


def test_example_settings_file_is_valid():
    settings = classroom.load(REPO / "classroom.example.toml")
    assert settings.presets and settings.caps["running_per_student"] >= 1
    for name in settings.presets:  # every preset it offers can be launched as it is
        model, train = build_configs(name)
        assert settings.violations(model, train) == [], name


@pytest.mark.parametrize("text, needle", [
    ("[classroom\n", "not valid TOML"),
    ("[students]\nx = 1\n", "unknown section [students]"),
    ("[caps]\nd_model = 'big'\n", "[caps] d_model must be a whole number"),
    ("[caps]\nd_model = 0\n", "at least 1"),
    ("[caps]\nwidth = 64\n", "unknown key 'width' in [caps]"),
    ("[classroom]\npresets = ['gpt5']\n", "unknown preset(s) 'gpt5'"),
    ("[classroom]\npresets = []\n", "non-empty list"),
    ("[locked]\nlearning = 0.1\n", "not a model or training setting"),
    ("[locked]\nnorm = 'batchnorm'\n", "cannot work"),
    ("[locked]\nd_model = 256\n[caps]\nd_model = 128\n", "over its own cap"),
    ("caps = 3\n", "must be a [caps] table"),
])
def test_bad_settings_give_one_clear_sentence(text, needle):
    with pytest.raises(ClassroomError) as e:
        parse(text, "room.toml")
    msg = str(e.value)
    assert needle in msg and msg.startswith("Classroom settings room.toml:")
    assert "Traceback" not in msg and "\n" not in msg


def test_missing_and_binary_settings_file(tmp_path):
    with pytest.raises(ClassroomError, match="does not exist"):
        classroom.load(tmp_path / "nope.toml")
    (tmp_path / "bin.toml").write_bytes(b"\xff\xfe\x00caps")
    with pytest.raises(ClassroomError, match="not UTF-8"):
        classroom.load(tmp_path / "bin.toml")


def test_time_and_step_caps():
    settings = parse("[caps]\nsteps = 100\ntime_budget = 30\n")
    assert settings.violations(*cfg(steps=10**6, time_budget=30.0)) == []  # on the clock
    assert settings.violations(*cfg(steps=100)) == []
    assert "time_budget = 60 is over" in settings.violations(*cfg(time_budget=60.0))[0]
    assert "steps = 500 is over" in settings.violations(*cfg(steps=500))[0]
    only_time = parse("[caps]\ntime_budget = 30\n")
    assert "set a time budget of at most 30 s" in only_time.violations(*cfg(steps=50))[0]


def test_violations_one_sentence_each():
    settings = parse("[locked]\ndevice = 'cpu'\n[caps]\nd_model = 64\nn_layers = 2\n"
                     "steps = 100\n[classroom]\ncorpora = ['shakespeare']\n")
    model, train = cfg(d_model=128, n_layers=4, steps=500, device="auto",
                       corpus="tinyshakespeare")
    problems = settings.violations(model, train)
    assert len(problems) == 5, problems
    assert any("device is locked by the teacher at 'cpu'" in p for p in problems)
    assert any("d_model = 128 is over this classroom's cap of 64" in p for p in problems)
    assert any("corpus 'tinyshakespeare' is not open" in p for p in problems)
    assert settings.violations(*cfg(d_model=64, n_layers=2, steps=100, device="cpu")) == []


def test_classroom_off_limits_nothing(runs_dir, monkeypatch):
    monkeypatch.delenv(classroom.ENV_CLASSROOM, raising=False)
    store = RunStore(runs_dir / "runs.db")
    for _ in range(5):
        classroom.create_run(store, *cfg(d_model=512, n_heads=8), owner="s-a")
    assert len(store.list_runs()) == 5


def test_limits_enforced_at_create_run(room):
    store = room("[caps]\nd_model = 64\nrunning_per_student = 1\nqueued_per_student = 2\n")
    with pytest.raises(ClassroomError, match="d_model = 128 is over"):
        classroom.create_run(store, *cfg(d_model=128), owner="s-a")
    ids = [classroom.create_run(store, *cfg(), owner="s-a")
           for _ in range(3)]  # 1 running + 2 queued
    with pytest.raises(ClassroomError, match="already have 0 run.s. running and 3 waiting"):
        classroom.create_run(store, *cfg(), owner="s-a")
    classroom.create_run(store, *cfg(), owner="s-b")  # a classmate is not blocked
    classroom.create_run(store, *cfg(), owner=None)  # nor the teacher's command line
    store.finish_run(ids[0], "finished", None)
    classroom.create_run(store, *cfg(), owner="s-a")  # a finished run frees a place
    assert len(store.list_runs()) == 6


def test_the_owner_is_counted_inside_the_insert_transaction(runs_dir):
    """The store shows an admission check the owner's counts (runs holding a slot, runs
    waiting) inside the transaction that inserts the run; a refusal writes nothing."""
    store = RunStore(runs_dir / "runs.db")
    held = store.create_run(*cfg(), owner="s-a")
    store.claim_next(4242)
    store.create_run(*cfg(), owner="s-a")
    store.create_run(*cfg(), owner="s-b")
    seen = []

    def refuse(holding, waiting):
        seen.append((holding, waiting))
        raise ClassroomError("no")
    with pytest.raises(ClassroomError):
        store.create_run(*cfg(), owner="s-a", admit=refuse)
    assert seen == [(1, 1)] and store.get_run(held).pid == 4242
    assert len(store.list_runs()) == 3


def test_broken_settings_file_refuses_runs(room):
    store = room("[caps\n")
    with pytest.raises(ClassroomError, match="not valid TOML"):
        classroom.create_run(store, *cfg(), owner="s-a")
    assert store.list_runs() == []


def test_fair_queue_round_robin_across_owners(runs_dir, monkeypatch):
    monkeypatch.delenv(classroom.ENV_CLASSROOM, raising=False)
    store = RunStore(runs_dir / "runs.db")
    hog = [store.create_run(*cfg(), owner="s-hog") for _ in range(4)]
    other = store.create_run(*cfg(), owner="s-other")
    late = store.create_run(*cfg(), owner="s-late")
    order = []
    for i in range(6):  # one slot: claim, start, finish, repeat
        rid = store.claim_next(100 + i, limit=1)
        assert store.claim_next(200 + i, limit=1) is None  # the slot is taken
        store.mark_running(rid, 100 + i, "cpu")
        store.finish_run(rid, "finished", None)
        order.append(rid)
    assert order[0] == hog[0]
    assert set(order[1:3]) == {other, late}  # classmates go before the hog's second run
    assert order[3:] == hog[1:]
    assert len(set(order)) == 6


def test_fair_queue_per_owner_running_cap(room):
    store = room("[caps]\nrunning_per_student = 1\nqueued_per_student = 5\n")
    cap = classroom.running_cap()  # what the job manager reads and passes on each round
    assert cap == 1
    a = [classroom.create_run(store, *cfg(), owner="s-a") for _ in range(3)]
    b = classroom.create_run(store, *cfg(), owner="s-b")
    assert store.claim_next(1, limit=4, per_owner=cap) == a[0]
    assert store.claim_next(2, limit=4, per_owner=cap) == b
    # free slots, but s-a already holds one
    assert store.claim_next(3, limit=4, per_owner=cap) is None
    store.mark_running(a[0], 1, "cpu")
    store.finish_run(a[0], "finished", None)
    assert store.claim_next(4, limit=4, per_owner=cap) == a[1]


def test_class_findings_pool_seeds_across_students(runs_dir):
    store = RunStore(runs_dir / "runs.db")
    losses = {("baseline", 0): 2.0, ("baseline", 1): 2.2, ("no-rope", 0): 2.5,
              ("no-rope", 1): 2.6}
    changes = {"baseline": {}, "no-rope": {"pos": "none"}}
    for owner in ("s-a", "s-b"):
        for (name, seed), loss in losses.items():
            rid = store.create_run(*cfg(seed=seed, **changes[name]), name=name, owner=owner)
            store.finish_run(rid, "finished", {"final_val_loss": loss + (owner == "s-b") * 0.1})
    store.create_run(*cfg(), name="baseline", owner="s-c")  # still queued: not counted
    rows = {r["variant"]: r for r in class_findings(store.list_runs())}
    assert set(rows) == {"baseline", "pos=none"}  # named by the setting that differs
    assert rows["baseline"]["runs"] == 4 and rows["pos=none"]["runs"] == 4
    assert rows["baseline"]["seeds"] == 2 and rows["pos=none"]["names"] == "no-rope"
    assert rows["baseline"]["settings"] == "pos=rope"
    assert rows["baseline"]["mean"] == pytest.approx(2.15)
    assert sorted(r.final_val_loss for r in rows["baseline"]["members"]) == pytest.approx(
        [2.0, 2.1, 2.2, 2.3])  # the runs behind the row, one dot each on the page
    assert rows["pos=none"]["diff_vs_baseline"] > 0


def test_class_findings_pool_by_settings_not_by_name(runs_dir):
    """Two runs both named "baseline" with different settings are two variants; runs
    with the same settings pool whatever their names."""
    store = RunStore(runs_dir / "runs.db")
    made = [("baseline", {}, 0, 2.0), ("mine", {}, 1, 2.2),
            ("baseline", {"norm": "layernorm", "pos": "learned"}, 0, 2.6)]
    for name, changes, seed, loss in made:
        rid = store.create_run(*cfg(seed=seed, **changes), name=name)
        store.finish_run(rid, "finished", {"final_val_loss": loss})
    rows = {r["settings"]: r for r in class_findings(store.list_runs())}
    assert set(rows) == {"norm=rmsnorm, pos=rope", "norm=layernorm, pos=learned"}
    llama = rows["norm=rmsnorm, pos=rope"]
    assert llama["variant"] == "baseline" and llama["runs"] == 2 and llama["seeds"] == 2
    assert llama["names"] == "baseline, mine" or llama["names"] == "mine, baseline"
    assert llama["mean"] == pytest.approx(2.1)
    other = rows["norm=layernorm, pos=learned"]
    assert other["runs"] == 1 and other["names"] == "baseline"
    assert other["diff_vs_baseline"] == pytest.approx(0.6)  # paired on seed 0


# --- The Teacher page under AppTest, with real finished runs -------------------------

@pytest.fixture(scope="module")
def room_runs(tmp_path_factory):
    """Two students' tiny runs: baseline and no-rope, seeds 0 and 1 (8 runs)."""
    import os
    import types

    from llama_core.lab.worker import execute_run
    from runs_fixtures import TINY as TINY_RUN

    path = tmp_path_factory.mktemp("teacher-page-runs")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LLAMA_LAB_RUNS", str(path))
        mp.delenv(classroom.ENV_CLASSROOM, raising=False)
        store = RunStore(path / "llama_lab.db")
        ids = {}
        for owner in ("s-ann", "s-bob"):
            for name, changes in {"baseline": {}, "no-rope": {"pos": "none"}}.items():
                for seed in (0, 1):
                    model, train = build_configs("tiny", {**TINY_RUN, **changes,
                                                          "steps": 10, "eval_interval": 5,
                                                          "seed": seed})
                    rid = store.create_run(model, train, name=name, owner=owner,
                                           pid=os.getpid())
                    assert execute_run(store.path, rid) == 0
                    ids[(owner, name, seed)] = rid
        yield types.SimpleNamespace(store=store, ids=ids, path=path)
        import ui.state
        ui.state._manager_for(str(path)).shutdown(stop_runs=True, timeout=30)
        ui.state._manager_for.clear()


def open_teacher(room_runs, ids=()):
    from streamlit.testing.v1 import AppTest
    at = AppTest.from_file(str(REPO / "dashboard.py"), default_timeout=60)
    at.switch_page("views/teacher.py")
    if ids:
        at.query_params["runs"] = list(ids)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LLAMA_LAB_RUNS", str(room_runs.path))
        at.run()
    assert not at.exception, at.exception
    return at


def dashboard_in_room(room_runs, monkeypatch, tmp_path, settings: str | None = None,
                      page: str | None = None, owner: str | None = None):
    """The dashboard under AppTest on the room's runs, run once: with these classroom
    settings (None: classroom mode off), on ``page``, as the student ``owner``."""
    from streamlit.testing.v1 import AppTest
    monkeypatch.setenv("LLAMA_LAB_RUNS", str(room_runs.path))
    if settings is not None:
        path = tmp_path / "room.toml"
        path.write_text(settings)
        monkeypatch.setenv(classroom.ENV_CLASSROOM, str(path))
    at = AppTest.from_file(str(REPO / "dashboard.py"), default_timeout=60)
    if page:
        at.switch_page(page)
    if owner:
        at.session_state["owner"] = owner
    return at.run()


def test_teacher_page_lists_the_room_and_pools_the_class(room_runs, monkeypatch):
    from helpers_apptest import read_table
    from helpers_markdown import as_read

    monkeypatch.setenv("LLAMA_LAB_RUNS", str(room_runs.path))
    at = open_teacher(room_runs)
    frames = [d.value for d in at.dataframe]
    room = next(f for f in frames if "owner" in f.columns)
    assert len(room) == 8 and set(room["owner"]) == {"s-ann", "s-bob"}
    found = read_table(at)  # indexed by the settings that differ
    found.insert(0, "variant", found.index)
    found.index = [as_read(n) for n in found["named"]]
    assert found.loc["baseline", "runs"] == 4 and found.loc["no-rope", "runs"] == 4
    assert found.loc["baseline", "seeds"] == 2 and found.loc["no-rope", "seeds"] == 2
    assert found.loc["no-rope", "variant"] == "pos=none"
    assert found.loc["baseline", "verdict"] == "baseline"
    assert "t_class" in [c.key for c in at.get("plotly_chart")] or at.get("plotly_chart")


def test_a_student_names_themself_and_the_teacher_sees_it(room_runs, monkeypatch,
                                                          tmp_path):
    at = dashboard_in_room(room_runs, monkeypatch, tmp_path,
                           "[caps]\nrunning_per_student = 1\n", owner="s-ann")
    try:
        at.text_input(key="student_name").input("  Ann   Smith ").run()
        assert not at.exception
        assert room_runs.store.student_names() == {"s-ann": "Ann Smith"}
        assert at.text_input(key="student_name").value == "Ann Smith"
        at.text_input(key="student_name").input("Ann\x07").run()  # a crafted message
        assert "control characters" in at.sidebar.error[0].value
        assert room_runs.store.student_names() == {"s-ann": "Ann Smith"}  # kept
        room = next(d.value for d in open_teacher(room_runs).dataframe
                    if "owner" in d.value.columns)
        assert set(room["owner"]) == {"Ann Smith (s-ann)", "s-bob"}
    finally:
        room_runs.store.set_student_name("s-ann", "")


def test_without_a_classroom_nobody_is_asked_for_a_name(room_runs, monkeypatch, tmp_path):
    at = dashboard_in_room(room_runs, monkeypatch, tmp_path)
    assert not at.exception
    assert "student_name" not in [t.key for t in at.text_input]


def test_predict_then_reveal_then_export(room_runs, monkeypatch):
    monkeypatch.setenv("LLAMA_LAB_RUNS", str(room_runs.path))
    a, b = room_runs.ids[("s-ann", "baseline", 0)], room_runs.ids[("s-ann", "no-rope", 0)]
    at = open_teacher(room_runs, [a, b])
    assert at.multiselect(key="runs").value == [a, b]
    assert at.button(key="t_reveal").disabled  # no peeking before a prediction
    n_charts = len(at.get("plotly_chart"))
    at.radio(key=f"t_guess:{a},{b}").set_value(a).run()
    at.button(key="t_reveal").click().run()
    assert not at.exception
    assert len(at.get("plotly_chart")) == n_charts + 1
    assert (at.success or at.warning)
    winner = min((room_runs.store.get_run(r) for r in (a, b)), key=lambda r: r.final_val_loss)
    shown = (at.success or at.warning)[0].value
    assert winner.id in shown
    at.button(key="t_prepare").click().run()
    assert not at.exception
    assert at.get("download_button")


def test_teacher_page_with_a_malicious_link(room_runs, monkeypatch):
    monkeypatch.setenv("LLAMA_LAB_RUNS", str(room_runs.path))
    at = open_teacher(room_runs, ["../../etc/passwd", "<script>"])
    assert at.warning and "not in this run store" in at.warning[0].value


def test_offered_presets_follow_the_settings(room, monkeypatch):
    room("[classroom]\npresets = ['kitano', 'tiny']\n")
    assert classroom.offered_presets() == [p for p in classroom.PRESETS
                                           if p in ("kitano", "tiny")]
    room("[caps\n")  # broken: offer everything, create_run will say why
    assert classroom.offered_presets() == list(classroom.PRESETS)
    monkeypatch.delenv(classroom.ENV_CLASSROOM)
    assert classroom.offered_presets() == list(classroom.PRESETS)


def test_command_line_obeys_the_classroom(tmp_path):
    import subprocess
    import sys
    settings = tmp_path / "room.toml"
    settings.write_text("[caps]\nd_model = 64\n[locked]\nnorm = 'rmsnorm'\n")
    env = {**__import__("os").environ, classroom.ENV_CLASSROOM: str(settings),
           "PYTHONPATH": str(REPO)}
    r = subprocess.run([sys.executable, "-m", "llama_core", "train", "--preset", "tiny",
                        "--set", "d_model=128", "--set", "norm=layernorm", "--db",
                        str(tmp_path / "runs.db")], capture_output=True, text=True,
                       env=env, cwd=REPO, timeout=120)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr
    assert "norm is locked by the teacher" in lines[0] and "d_model = 128" in lines[0]
    assert RunStore(tmp_path / "runs.db").list_runs() == []


def test_teacher_key(room_runs, tmp_path, monkeypatch):
    assert parse("[classroom]\nteacher_key = 'owl-42'\n").teacher_ok("owl-42")
    assert not parse("[classroom]\nteacher_key = 'owl-42'\n").teacher_ok("owl")
    assert parse("").teacher_ok(None)
    with pytest.raises(ClassroomError, match="teacher_key must be"):
        parse("[classroom]\nteacher_key = 7\n")
    at = dashboard_in_room(room_runs, monkeypatch, tmp_path,
                           "[classroom]\nteacher_key = 'owl-42'\n", "views/teacher.py")
    assert not at.exception and not at.dataframe  # nothing shown without the key
    at.text_input(key="t_key").input("wrong").run()
    assert at.error and not at.dataframe
    at.text_input(key="t_key").input("owl-42").run()
    assert not at.exception and any("owner" in d.value.columns for d in at.dataframe)


def test_train_page_offers_only_the_classroom_presets(room_runs, tmp_path, monkeypatch):
    at = dashboard_in_room(room_runs, monkeypatch, tmp_path,
                           "[classroom]\npresets = ['kitano', 'classroom']\n",
                           "views/train.py")
    assert not at.exception
    box = at.selectbox(key="tr_preset")
    assert box.options == ["kitano", "classroom"] and box.value == "kitano"  # PRESETS' order
