"""The training pipeline's commands, one parser for all:

    python -m training run --data-dir DIR --experiments all --out models
    python -m training assessability --data-dir DIR --out models/pneumonia/2
    python -m training drift-reference --data-dir DIR models/pneumonia/2
    python -m training redraw --from-report models/report.json
    python -m training robustness --data-dir DIR --models pneumonia/2,pneumonia_compact/1

Flags with no command before them run the experiments, as before there were commands:
`python -m training --data-dir DIR ...` is `python -m training run --data-dir DIR ...`.
`python -m training.assessability`, `.drift_reference` and `.redraw` still work too.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up noise out

from training import assessability, drift_reference, redraw, robustness, run  # noqa: E402
from training.command import FORMATTER, dispatch, name_of  # noqa: E402

PROG = "python -m training"
# Each module owns its flags (add_arguments) and its work (main); training/command.py.
COMMANDS = {name_of(module): module
            for module in (run, assessability, drift_reference, redraw, robustness)}
DEFAULT_COMMAND = "run"  # what flags with no command before them mean


def build_parser() -> argparse.ArgumentParser:
    return _build()[0]


def with_command(argv: list[str]) -> list[str]:
    """`argv` with `run` before it when it starts with a flag or is empty (the form before
    there were commands); -h/--help alone stays the list of commands."""
    if not argv or argv[0].startswith("-") and argv[0] not in ("-h", "--help"):
        return [DEFAULT_COMMAND, *argv]
    return argv


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    argv = sys.argv[1:] if argv is None else list(argv)
    return build_parser().parse_args(with_command(argv))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser, commands = _build()
    args = parser.parse_args(with_command(argv))
    return dispatch(COMMANDS[args.command], args, commands[args.command],
                    f"{PROG} {shlex.join(argv)}")


def _build() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The top-level parser, and each command's own parser by name (for its usage errors)."""
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=FORMATTER)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    parsers = {}
    for name, module in COMMANDS.items():
        parsers[name] = commands.add_parser(name, help=module.__doc__.split("\n", 1)[0],
                                            description=module.__doc__,
                                            formatter_class=FORMATTER)
        module.add_arguments(parsers[name])
    return parser, parsers
