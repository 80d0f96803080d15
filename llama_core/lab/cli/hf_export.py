"""``python -m llama_core export RUN_ID --format hf DIR``: a run as a Hugging Face Llama
folder that ``LlamaForCausalLM.from_pretrained(DIR)`` loads (lab/hf_runs.py does the
work)."""

from __future__ import annotations

from .output import print_result


def add_export_command(sub) -> None:
    p = sub.add_parser("export", help="write a run as a Hugging Face Llama folder")
    p.add_argument("run_id")
    p.add_argument("--format", required=True, choices=["hf"],
                   help="hf: config.json, model.safetensors and tokenizer.json for transformers")
    p.add_argument("dir", help="a new or empty folder to write into")
    p.add_argument("--db", help="run store database file")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_export)


def cmd_export(args) -> int:
    from ..hf_runs import export_run
    from ..store import RunStore

    result = export_run(RunStore(args.db), args.run_id, args.dir)
    print_result(result, args.json, (
        f"Exported run {result['run_id']} ({result['params']:,} parameters) to "
        f"{result['folder']}: {', '.join(result['files'])}; load it with "
        f"LlamaForCausalLM.from_pretrained."))
    return 0
