"""What reproduces each run: its configs in short, seed, code and torch version,
device, threads and the corpus's sha256, as a table and as the JSON a download holds."""

from __future__ import annotations

from typing import Sequence

import pandas as pd


def records_frame(runs: Sequence) -> pd.DataFrame:
    """Everything needed to reproduce each run: its configs in short, seed, code
    version, torch version, device and the corpus's sha256."""
    rows = []
    for r in runs:
        m, t = r.model_config or {}, r.train_config or {}
        rows.append({
            "run": r.id, "variant": r.name, "seed": r.seed, "status": r.status,
            "model": (f"{m.get('norm')}/{m.get('pos')}/{m.get('ffn')}"
                      f"{'' if m.get('causal', True) else ' no-mask'}"
                      f"{'' if m.get('attention', True) else ' no-attention'}"
                      f"{'' if m.get('bug', 'none') == 'none' else ' BUG ' + m.get('bug')}"
                      f" L{m.get('n_layers')} d{m.get('d_model')} h{m.get('n_heads')}"
                      f" T{m.get('context_window')}"),
            "training": (f"{t.get('steps')} steps, batch {t.get('batch_size')}, "
                         f"lr {t.get('lr')}, {t.get('corpus')}"),
            "code version": r.code_version, "torch": r.torch_version,
            "device": r.device, "threads": t.get("threads"),
            "data sha256": (r.data_sha256 or "")[:12],
            "final val loss": r.final_val_loss,
        })
    return pd.DataFrame(rows)


def configs_json(runs: Sequence) -> list[dict]:
    """The configs of each run with what identifies the code and data it ran on."""
    return [{"run_id": r.id, "name": r.name, "group": r.group, "seed": r.seed,
             "model_config": r.model_config, "train_config": r.train_config,
             "code_version": r.code_version, "torch_version": r.torch_version,
             "device": r.device, "data_sha256": r.data_sha256, "params": r.params,
             "final_val_loss": r.final_val_loss} for r in runs]


def settings_frame(run) -> pd.DataFrame:
    """Every setting of one run as it was trained, model then training."""
    rows = [{"setting": k, "part": "model", "value": str(v)}
            for k, v in run.model_config.items()]
    rows += [{"setting": k, "part": "train", "value": str(v)}
             for k, v in run.train_config.items()]
    return pd.DataFrame(rows)
