"""A command of `python -m training` is a module with `add_arguments(parser)`, its flags, and
`main(args, parser) -> int`, its work; training/cli.py gathers them under one parser. Here,
what both forms share, and `run_alone`: a module's own entry point, the form before there
were commands (`python -m training.redraw` for `python -m training redraw`).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from types import ModuleType

# The modules' docstrings are the commands' descriptions: keep their example lines.
FORMATTER = argparse.RawDescriptionHelpFormatter


def name_of(module: ModuleType) -> str:
    """training.drift_reference -> drift-reference."""
    return module.__spec__.name.rsplit(".", 1)[-1].replace("_", "-")


def alone_parser(module: ModuleType) -> argparse.ArgumentParser:
    """The module's command alone: its flags, its module's name in usage and errors, and the
    namespace `python -m training COMMAND` gives."""
    parser = argparse.ArgumentParser(prog=f"python -m {module.__spec__.name}",
                                     description=module.__doc__, formatter_class=FORMATTER)
    module.add_arguments(parser)
    parser.set_defaults(command=name_of(module))
    return parser


def run_alone(module: ModuleType, argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = alone_parser(module)
    return dispatch(module, parser.parse_args(argv), parser,
                    f"{parser.prog} {shlex.join(argv)}")


def dispatch(module: ModuleType, args: argparse.Namespace, parser: argparse.ArgumentParser,
             command_line: str) -> int:
    """Run the command; `parser` is the command's own, for its usage errors, and
    `command_line` the command as typed, which the reports record."""
    args.command_line = command_line
    return module.main(args, parser)
