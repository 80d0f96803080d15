"""The dashboard's entry point renders the Start page with no exception (AppTest)."""

from streamlit.testing.v1 import AppTest

from helpers_browser import REPO


def start_app() -> AppTest:
    """The whole app from its entry point, as `streamlit run` would start it."""
    at = AppTest.from_file(str(REPO / "dashboard.py"), default_timeout=60)
    return at.run()


def test_start_page_renders(runs_dir):
    at = start_app()
    assert not at.exception
    assert at.title[0].value == "Llama Lab"
    assert at.button(key="start_first_run").label == "Train your first model"
    assert len(at.get("graphviz_chart")) == 1


def test_sidebar_shows_device(runs_dir):
    at = start_app()
    captions = " ".join(c.value for c in at.sidebar.caption)
    assert "Device:" in captions and ("CPU" in captions or "GPU" in captions)


def test_swapping_a_part_redraws_the_block(runs_dir):
    at = start_app()
    assert "RMSNorm" in at.get("graphviz_chart")[0].proto.spec
    assert at.success  # the default is Llama's own block
    at.session_state["start_norm"] = "layernorm"
    at.session_state["start_mask"] = False
    at.run()
    assert not at.exception
    spec = at.get("graphviz_chart")[0].proto.spec
    assert "LayerNorm" in spec and "RMSNorm" not in spec and "no mask" in spec
    assert at.warning and not at.success


def test_first_run_button(runs_dir):
    at = start_app()
    at.button(key="start_first_run").click().run()
    assert not at.exception
    if not (REPO / "views" / "train.py").exists():
        assert "not here yet" in at.info[0].value
