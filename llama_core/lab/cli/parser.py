"""The command line's argument parser: a mistake in the arguments is one sentence, and
the flags every training command shares.

argparse answers ``--steps nan`` with the whole usage block and a terse
``argument --steps: invalid int value: 'nan'``. ``SentenceParser`` prints only
``llama_core: --steps takes a whole number, not 'nan'.`` on stderr and exits 2, like
every other mistake a user can fix. Subcommands inherit the class (argparse creates
subparsers with their parent's type), so every flag of every subcommand is covered.
"""

from __future__ import annotations

import argparse
import re
import sys
from typing import NoReturn

from ...errors import UserError
from ...presets import PRESETS
from ..plain_text import terminal_text

EXIT_USER_ERROR = 2

_ARGUMENT = re.compile(r"argument (?P<name>[^:]+): (?P<problem>.*)", re.S)
_TYPE = re.compile(r"invalid (?P<type>\w+) value: (?P<value>.*)", re.S)
_CHOICE = re.compile(r"invalid choice: (?P<value>.*?) \(choose from (?P<choices>.*)\)", re.S)
_KINDS = {"int": "a whole number", "float": "a number"}


def sentence(message: str, prog: str) -> str:
    """argparse's error ``message`` as one sentence that says what to change."""
    m = _ARGUMENT.fullmatch(message)
    if m:
        name = m["name"].split("/")[-1]  # "-o/--output" -> "--output"
        problem = m["problem"].strip()
        t, c = _TYPE.fullmatch(problem), _CHOICE.fullmatch(problem)
        if t:
            kind = _KINDS.get(t["type"], f"a value of type {t['type']}")
            return f"{name} takes {kind}, not {t['value']}."
        if c:
            choices = ", ".join(x.strip().strip("'\"") for x in c["choices"].split(","))
            return f"{name} must be one of {choices}, not {c['value']}."
        if problem.startswith("expected"):
            return f"{name} needs a value ({problem}); see `{prog} --help`."
        return f"{name} {problem.rstrip('.')}."
    if message.startswith("unrecognized arguments:"):
        extra = message.partition(":")[2].strip()
        return f"{prog} does not take {extra}; see `{prog} --help`."
    if message.startswith("the following arguments are required:"):
        missing = message.partition(":")[2].strip()
        return f"{prog} needs {missing}; see `{prog} --help`."
    return f"{message.rstrip('.')}; see `{prog} --help`."


class SentenceParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line on stderr, exit 2, no usage block."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"llama_core: {terminal_text(sentence(message, self.prog))}\n")
        sys.exit(EXIT_USER_ERROR)


# --- The configuration flags of train and sweep ----------------------------------------

# flag attribute -> the config field it sets
_CONFIG_FLAGS = (("corpus", "corpus"), ("steps", "steps"), ("time_budget", "time_budget"),
                 ("device", "device"), ("seed", "seed"))


def add_config_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", help=f"start from a preset: {', '.join(PRESETS)}")
    p.add_argument("--set", nargs="+", action="append", metavar="KEY=VALUE",
                   help="set any ModelConfig or TrainConfig field, e.g. --set norm=layernorm")
    p.add_argument("--corpus", help="shakespeare (built in), tinyshakespeare, or a text file")
    p.add_argument("--steps", type=int, help="number of optimizer steps (a cap when a "
                                             "time budget is given)")
    p.add_argument("--time-budget", type=float, help="train for this many seconds")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"])
    p.add_argument("--seed", type=int)


def config_overrides(args) -> dict[str, str]:
    """The config fields the flags set, as text for ``build_configs``: every
    ``--set a=1 b=2 --set c=3`` pair, then ``--corpus``, ``--steps``, ``--time-budget``,
    ``--device`` and ``--seed`` where given."""
    out: dict[str, str] = {}
    for pair in [p for group in (args.set or []) for p in group]:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--set takes key=value, not {pair!r}.")
        out[key.strip()] = value
    for flag, key in _CONFIG_FLAGS:
        value = getattr(args, flag, None)
        if value is not None:
            out[key] = str(value)
    return out
