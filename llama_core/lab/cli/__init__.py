"""The command line: ``python -m llama_core train|corpus|runs|sweep|classset|export|import``.

One module per command, each adding its own subparser; this one only wires them
together and runs the one asked for. Every subcommand can answer in JSON (``--json``)
for scripts. A user's mistake prints one line on stderr and exits 2; there is no
traceback for anything the user can fix.
"""

from __future__ import annotations

import argparse
import sys

from ...errors import UserError
from ..plain_text import terminal_text
from .classset import add_classset_command
from .corpus import add_corpus_command
from .hf_export import add_export_command
from .hf_import import add_import_command
from .parser import EXIT_USER_ERROR, SentenceParser
from .runs import add_runs_command
from .sweep import add_sweep_command
from .train import add_train_command


def build_parser() -> argparse.ArgumentParser:
    parser = SentenceParser(  # a mistake in the arguments is one sentence
        prog="python -m llama_core",
        description="Llama Lab: build Llama one modification at a time and train it.")
    sub = parser.add_subparsers(dest="command", required=True)
    for add_command in (add_train_command, add_corpus_command, add_runs_command,
                        add_sweep_command, add_classset_command, add_export_command,
                        add_import_command):
        add_command(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except UserError as e:
        print(f"error: {terminal_text(e)}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
