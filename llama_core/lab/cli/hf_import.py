"""``python -m llama_core import SOURCE``: a Hugging Face Llama (a local folder, or a hub
id on a machine that is online) becomes a finished run with no training curve, to look
inside on every page (lab/hf_runs.py does the work)."""

from __future__ import annotations

from .output import print_result


def add_import_command(sub) -> None:
    p = sub.add_parser("import", help="import a Hugging Face Llama checkpoint as a run")
    p.add_argument("source", help="a folder with config.json, safetensors weights and "
                                  "tokenizer.json, or a hub id such as "
                                  "HuggingFaceTB/SmolLM2-135M (needs a network)")
    p.add_argument("--name", help="the run's name (default: the model's)")
    p.add_argument("--db", help="run store database file")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_import)


def cmd_import(args) -> int:
    from ..hf_runs import import_model
    from ..store import RunStore

    result = import_model(RunStore(args.db), args.source, args.name)
    notes = "".join(f" Note: {n}." for n in result["notes"])
    kind = ("byte-pair" if result["tokenizer"] == "BytePairTokenizer" else "character")
    print_result(result, args.json, (
        f"Imported {result['source']} as run {result['run_id']}: "
        f"{result['params']:,} parameters, {result['stored_as']} weights loaded as "
        f"{result['loaded_as']}, a {kind} tokenizer of {result['tokenizer_tokens']:,} "
        f"tokens, context {result['context_window']:,}.{notes} Open it on the dashboard's "
        f"pages with ?run={result['run_id']}."))
    return 0
