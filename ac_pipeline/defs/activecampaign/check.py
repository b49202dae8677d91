"""`ac-pipeline check`: does the configured ActiveCampaign account answer, with this key?

Reads the same two environment variables as the pipeline (or uses the built-in sandbox when no URL is
set), reads one list and the user groups, and says what it found or what to fix. The key is never printed.
"""

from __future__ import annotations

import argparse
import os

from ac_pipeline.activecampaign import ActiveCampaignError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("check", help="check the connection to the configured ActiveCampaign account")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ac_pipeline.defs.activecampaign.resources import activecampaign_resource
    from ac_pipeline.settings import paths

    configured = activecampaign_resource(paths())
    # Outside a Dagster run nothing resolves EnvVar fields, so read the two variables here.
    resource = (
        configured.model_copy(
            update={
                "api_url": os.environ.get("ACTIVECAMPAIGN_API_URL") or None,
                "api_key": os.environ.get("ACTIVECAMPAIGN_API_KEY") or None,
            }
        )
        if not configured.uses_sandbox
        else configured
    )
    try:
        with resource.get_client() as client:
            found = client.check_connection()
    except ActiveCampaignError as exc:
        print(f"ActiveCampaign at {resource.describe()} did not accept the connection: {exc}")
        return 1
    except Exception as exc:
        print(f"could not check the connection to {resource.describe()}: {exc}")
        return 1
    print(
        f"connected to {resource.describe()} ({found['api_url']}): {found['lists_total']} lists, "
        f"user groups: {', '.join(map(str, found['groups'])) or 'none'}"
    )
    return 0
