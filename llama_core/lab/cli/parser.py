"""The command line's argument parser: a mistake in the arguments is one sentence.

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
