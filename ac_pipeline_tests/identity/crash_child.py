"""A sync run in a process of its own that SIGKILLs itself at the N-th email change request, for test_crash.py.

    python crash_child.py PARTITION MODE N

MODE `before-request`: the change's intent is in the journal, the request is never sent; `after-request`:
ActiveCampaign made the change, and the push dies before recording it. Otherwise it runs as
ac_pipeline_tests/sync/crash_child.py does (locations and destination from the environment).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository, for ac_pipeline_tests

from ac_pipeline.activecampaign import ActiveCampaignClient
from ac_pipeline_tests.sync import crash_child


def die_at_email_change(mode: str, nth: int) -> None:
    original = ActiveCampaignClient.change_email
    calls = [0]

    def change_email(self: ActiveCampaignClient, contact_id: int | str, email: str) -> dict[str, Any]:
        calls[0] += 1
        if calls[0] == nth and mode == "before-request":
            crash_child.die()
        answer = original(self, contact_id, email)
        if calls[0] == nth and mode == "after-request":
            print(f"changed contact {contact_id} to {email}; dying", flush=True)
            crash_child.die()
        return answer

    ActiveCampaignClient.change_email = change_email  # type: ignore[method-assign]


if __name__ == "__main__":
    partition, mode, nth = sys.argv[1:4]
    die_at_email_change(mode, int(nth))
    sys.argv = [sys.argv[0], partition]
    sys.exit(crash_child.main())
