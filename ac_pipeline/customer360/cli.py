"""`ac-pipeline generate`: write the sample customer 360."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ac_pipeline.customer360.generate import generate
from ac_pipeline.settings import paths


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("generate", help="write a sample customer 360 (DuckDB)")
    parser.add_argument("--customers", type=int, default=100_000, help="rows to generate (default 100,000)")
    parser.add_argument("--seed", type=int, default=42, help="the same seed gives the same table")
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help="database file (default: $AC_PIPELINE_CUSTOMER_360 or $AC_PIPELINE_HOME/customer_360.duckdb)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    output = args.output or paths().customer_360
    started = time.perf_counter()
    generate(output, customers=args.customers, seed=args.seed)
    print(f"wrote {args.customers:,} customers to {output} in {time.perf_counter() - started:.1f} s")
    return 0
