"""The command line end to end, as other tools call it: real processes, real store."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from llama_core.stats import mean_ci, paired_difference, t_critical, verdict

REPO = Path(__file__).resolve().parent.parent
TINY_SET = ["--set", "eval_interval=10", "eval_batches=2", "sample_chars=10", "threads=1",
            "batch_size=8", "context_window=16", "d_model=32", "n_layers=1", "n_heads=2"]


def cli(*args, runs_dir, check=True):
    env = dict(os.environ, LLAMA_LAB_RUNS=str(runs_dir), PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-m", "llama_core", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def test_train_json_reports_the_contract_fields(tmp_path):
    out = cli("train", "--preset", "tiny", "--steps", "20", *TINY_SET, "--json",
              runs_dir=tmp_path)
    result = json.loads(out.stdout)
    for key in ("run_id", "final_val_loss", "final_train_loss", "steps", "tokens", "wall_s",
                "tokens_per_s", "params", "device"):
        assert result[key] is not None, key
    assert result["steps"] == 20 and result["tokens"] == 20 * 8 * 16
    assert result["device"] == "cpu"

    listed = json.loads(cli("runs", "list", "--json", runs_dir=tmp_path).stdout)
    assert [r["id"] for r in listed] == [result["run_id"]]
    shown = json.loads(cli("runs", "show", result["run_id"], "--json", runs_dir=tmp_path).stdout)
    assert [m["step"] for m in shown["metrics"]] == [10, 20]
    from llama_core.corpora import load_corpus
    assert shown["model_config"]["vocab_size"] == load_corpus("shakespeare").vocab_size
    csv_text = cli("runs", "export", result["run_id"], runs_dir=tmp_path).stdout
    assert csv_text.splitlines()[0].startswith("run_id,name,group,status")
    assert len(csv_text.splitlines()) == 3
    assert (tmp_path / result["run_id"] / "model.safetensors").is_file()

    cli("runs", "delete", result["run_id"], runs_dir=tmp_path)
    assert json.loads(cli("runs", "list", "--json", runs_dir=tmp_path).stdout) == []
    assert not (tmp_path / result["run_id"]).exists()


@pytest.mark.parametrize("args,phrase", [
    (["train", "--set", "n_heads=3"], "must divide d_model"),
    (["train", "--set", "nonsense"], "--set takes key=value"),
    (["train", "--preset", "nope"], "Unknown preset"),
    (["train", "--corpus", "/no/such/file.txt"], "No file at"),
    (["runs", "show", "r00000000"], "There is no run"),
    (["runs", "show", "../../etc/passwd"], "run id"),
    (["sweep", "--preset", "tiny"], "at least one --variant"),
])
def test_user_mistakes_print_one_line_and_exit_2(tmp_path, args, phrase):
    proc = cli(*args, runs_dir=tmp_path, check=False)
    assert proc.returncode == 2
    assert phrase in proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_sweep_runs_paired_variants_and_summarises(tmp_path):
    out = cli("sweep", "--preset", "tiny", "--steps", "20", *TINY_SET,
              "--variant", "norm=layernorm", "--seeds", "2", "--parallel", "2", "--json",
              runs_dir=tmp_path)
    report = json.loads(out.stdout)
    assert len(report["run_ids"]) == 4 and report["not_finished"] == {}
    rows = {r["variant"]: r for r in report["summary"]}
    assert set(rows) == {"baseline", "norm=layernorm"}
    assert rows["baseline"]["seeds"] == rows["norm=layernorm"]["seeds"] == 2
    assert rows["norm=layernorm"]["verdict"] in ("better", "worse", "within seed noise")
    runs = json.loads(cli("runs", "list", "--group", report["group"], "--json",
                          runs_dir=tmp_path).stdout)
    assert sorted((r["name"], r["seed"]) for r in runs) == [
        ("baseline", 0), ("baseline", 1), ("norm=layernorm", 0), ("norm=layernorm", 1)]


def test_corpus_build_describes_the_builtin_corpus(tmp_path):
    info = json.loads(cli("corpus", "build", "--json", runs_dir=tmp_path).stdout)
    assert info["name"] == "shakespeare" and info["chars"] > 1_000_000
    assert info["train_tokens"] + info["val_tokens"] == info["chars"]


# --- statistics behind the sweep summary ---------------------------------------------

def test_confidence_interval_matches_a_hand_computation():
    # values 1, 2, 3, 4: mean 2.5, s = sqrt(5/3), t(0.975, 3) = 3.182
    ci = mean_ci([1, 2, 3, 4])
    assert ci.mean == 2.5
    assert abs(ci.half_width - 3.182 * (5 / 3) ** 0.5 / 2) < 1e-12
    assert t_critical(1) == 12.706 and t_critical(1000) == 1.96


def test_paired_differences_and_verdicts():
    base = {0: 2.0, 1: 2.2, 2: 1.9}
    better = {s: v - 0.1 for s, v in base.items()}
    assert verdict(paired_difference(better, base)) == "better"  # zero spread, clear gain
    noisy = {0: 2.05, 1: 2.15, 2: 1.92}
    assert verdict(paired_difference(noisy, base)) == "within seed noise"
    assert verdict(paired_difference({0: 2.5}, {0: 2.0})) == "one seed: no error bar"
    assert verdict(paired_difference({s: v + 0.2 for s, v in base.items()}, base)) == "worse"
