"""`ac-pipeline state`: look at and repair the sync state by hand.

`forget AUDIENCE` drops what the state believes about one audience's list (snapshot, intent journal,
destination, last read-back), keeping the ledger and runs as history. The next sync then reads the list
back and rebuilds the snapshot from it (a resync). A sync does that by itself when the list was recreated
or the account changed; forgetting is for starting over by hand.
"""

from __future__ import annotations

import argparse

from ac_pipeline.settings import paths
from ac_pipeline.state.backend import StateError
from ac_pipeline.state.store import SyncState


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "state", help="look at or repair the sync state (state.duckdb, or AC_PIPELINE_STATE)"
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    show = actions.add_parser("show", help="what the state holds for each audience")
    show.set_defaults(func=_show)
    forget = actions.add_parser("forget", help="drop one audience's snapshot, journal, destination and last read")
    forget.add_argument("audience", help="the audience key")
    forget.add_argument("--yes", action="store_true", help="do it (without it, say what would be dropped)")
    forget.set_defaults(func=_forget)


def _show(args: argparse.Namespace) -> int:
    state = SyncState(paths().state)
    try:
        with state.connect(read_only=True) as session:
            rows = session.rows(
                """SELECT s.audience, s.status, count(*), min(d.account), min(d.list_id)
                   FROM snapshot s LEFT JOIN destination d USING (audience)
                   GROUP BY s.audience, s.status ORDER BY s.audience, s.status"""
            )
            journal = dict(session.rows("SELECT audience, count(*) FROM journal GROUP BY audience"))
            reads = session.rows("SELECT audience, members, full_at, began_at FROM list_reads ORDER BY audience")
    except StateError as error:
        print(error)
        return 2
    print(f"sync state: {state.where}")
    for audience, status, count, account, list_id in rows:
        print(f"  {audience:<24} {status:<10} {count:>10,}   list {list_id or '?'} in {account or '(not recorded)'}")
    for audience, count in journal.items():
        print(f"  {audience:<24} in flight  {count:>10,}   (an attempt stopped; the next push asks ActiveCampaign)")
    for audience, members, full_at, began_at in reads:
        print(
            f"  {audience:<24} read back  {members:>10,}   contacts on the list; last read {began_at:%Y-%m-%d %H:%M} UTC,"
            f" last full read {full_at:%Y-%m-%d %H:%M} UTC"
        )
    return 0


def _forget(args: argparse.Namespace) -> int:
    state = SyncState(paths().state)
    try:
        if not args.yes:
            counts = state.snapshot_counts(args.audience)
            print(
                f"would drop the snapshot of {args.audience!r} ({', '.join(f'{k} {v:,}' for k, v in counts.items())}), "
                "its intent journal and its destination from "
                f"{state.where}; the ledger and runs stay. Run again with --yes to do it"
            )
            return 1
        removed = state.forget(args.audience)
    except StateError as error:
        print(error)
        return 2
    print(
        f"forgot {args.audience!r}: {removed['snapshot']:,} snapshot rows, {removed['journal']:,} journal rows. "
        "Its next sync reads the list back and rebuilds the snapshot from it (a resync)"
    )
    return 0
