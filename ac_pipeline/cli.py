"""The `ac-pipeline` command: one entry point, a sub-command per job.

Each sub-command lives next to the code it drives and registers its own arguments through an
`add_parser(subparsers)` function, so this file only lists them. Imports are deferred so that
`ac-pipeline sandbox` does not pay for importing Dagster.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# sub-command -> module that defines add_parser(subparsers); each parser sets `func` (args -> exit code).
SUBCOMMANDS = {
    "generate": "ac_pipeline.customer360.cli",
    "sandbox": "ac_pipeline.sandbox.cli",
    "demo": "ac_pipeline.demo",
    "check": "ac_pipeline.defs.activecampaign.check",
    "state": "ac_pipeline.state.cli",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ac-pipeline",
        description="Keep ActiveCampaign lists in step with audiences over a DuckDB customer 360.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module_name in SUBCOMMANDS.values():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue  # a sub-command still being built
        module.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
