"""The `klip` command. Each subcommand lives beside the code it drives and is imported only when used,
so `klip --help` stays fast and a machine without the geo stack can still run `klip bench pretrain`.

An error the user causes (klip_lib.errors: a missing file, a bad value, an unreadable input) is printed as one
line naming the input and what to do, with exit status 2; a bug keeps its traceback."""

from __future__ import annotations

import argparse
import importlib
import sys

from .errors import one_line, user_errors

# subcommand -> module with `add_arguments(parser)` and `main(args) -> int`
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("klip_lib.runner", "execute the notebooks in order with Papermill into reports/<run>/"),
    "simulate": ("klip_lib.data.commands", "simulate a SAR dataset with ground truth"),
    "caption": ("klip_lib.hcot.commands", "generate HCoT captions for an index (resumable)"),
    "bench": ("klip_lib.bench", "benchmarks: throughput of data, caption, pretrain; SCIO screening (scio)"),
    "artifacts": ("klip_lib.artifacts", "list a run folder's artifacts and what made each (manifests)"),
}


class Parser(argparse.ArgumentParser):
    """argparse that reports a bad command line in one line (and points at --help) instead of usage + error."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="klip", description="FUSAR-KLIP workbench")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        try:
            importlib.import_module(module).add_arguments(p)
        except ModuleNotFoundError as e:
            if not e.name or not e.name.startswith("klip_lib"):
                raise
            p.set_defaults(_missing=f"`klip {name}` is not available in this version ({e.name} missing)")
        p.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "_missing", None):
        print(f"klip: {args._missing}", file=sys.stderr)
        return 2
    if args.command != "artifacts":  # same seed, same numbers (klip_lib.determinism; KLIP_DETERMINISTIC=0: off)
        from . import determinism

        determinism.configure()
    try:
        return int(importlib.import_module(args._module).main(args) or 0)
    except user_errors() as e:
        command = " ".join(["klip", args.command] + ([args.topic] if getattr(args, "topic", None) else []))
        print(f"{command}: {one_line(e)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
