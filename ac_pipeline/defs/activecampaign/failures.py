"""Step failures that say why a sync or read-back stopped and what to do, as `dg.Failure` with a description and
metadata: the failed step is what an operator opens first, and a bare exception there shows only a stack trace.

Each known error keeps its own message (it names the cause); the failure adds the audience, the kind of problem,
what to do about it, and whether Dagster's retry policy may try again.
"""

from dataclasses import dataclass

import dagster as dg

from ac_pipeline.activecampaign import AuthError
from ac_pipeline.audiences.config import Audience
from ac_pipeline.defs.activecampaign.local_sandbox import SandboxUnavailable
from ac_pipeline.state.backend import StateBusy, StateError
from ac_pipeline.sync.bulk import PushIncomplete
from ac_pipeline.sync.destination import DestinationError
from ac_pipeline.sync.push import DestinationChanged, RemovalsHeld


@dataclass(frozen=True)
class Remedy:
    problem: str
    what_to_do: str
    # False for what a retry cannot fix: configuration, or a person's decision.
    retry: bool


# Most specific first: StateBusy is a StateError.
REMEDIES: tuple[tuple[type[BaseException], Remedy], ...] = (
    (
        DestinationError,
        Remedy(
            "the list, group or fields are not in ActiveCampaign as audiences.yaml says",
            "Fix audiences.yaml or the ActiveCampaign account as the reason says, then run the audience again.",
            retry=False,
        ),
    ),
    (
        DestinationChanged,
        Remedy(
            "the sync snapshot describes another list or account than the one the push would write to",
            "Run the audience_sync job (it rebuilds the snapshot from the list by itself), or materialize "
            "activecampaign_list_members with the run tag ac_pipeline/resync=true, then sync again.",
            retry=False,
        ),
    ),
    (
        RemovalsHeld,
        Remedy(
            "a resync would remove more of the list than the removal guard allows",
            "Check that the audience is right; if the removals are intended, run again with the run tag "
            "ac_pipeline/allow_removals=<audience key>.",
            retry=False,
        ),
    ),
    (
        SandboxUnavailable,
        Remedy(
            "the local ActiveCampaign sandbox could not be reached or started",
            "Follow the reason (stop the other sandbox or pick another port), then run again.",
            retry=False,
        ),
    ),
    (
        AuthError,
        Remedy(
            "ActiveCampaign refused the API key",
            "Set ACTIVECAMPAIGN_API_URL and ACTIVECAMPAIGN_API_KEY to the account's (Settings -> Developer), "
            "check them with `ac-pipeline check`, then run again.",
            retry=False,
        ),
    ),
    (
        PushIncomplete,
        Remedy(
            "some contacts were not confirmed by ActiveCampaign",
            "Nothing to do at once: the retry sends only what is not confirmed yet. If every retry fails, look at "
            "the ledger in the sync state for the reasons, and at ActiveCampaign's status page.",
            retry=True,
        ),
    ),
    (
        StateBusy,
        Remedy(
            "another run holds the audience's sync state",
            "Let the other run finish (the reason names it); the retry waits for it again.",
            retry=True,
        ),
    ),
    (
        StateError,
        Remedy(
            "the sync state cannot be used as it is",
            "Follow the reason: wait for the process holding the file (the retry does), or restore a damaged state "
            "from a backup or move it aside.",
            retry=True,  # a state file another process holds is a StateError too, and that passes
        ),
    ),
)

UNEXPECTED = Remedy(
    "an unexpected error",
    "The retry resumes from what ActiveCampaign confirmed. If every retry fails, the cause below the failure has "
    "the details.",
    retry=True,
)


def remedy_for(error: BaseException) -> Remedy:
    return next((remedy for kind, remedy in REMEDIES if isinstance(error, kind)), UNEXPECTED)


def step_failure(action: str, audience: Audience, error: BaseException) -> dg.Failure:
    """`action` (`Sync`, `Read-back`) of the audience stopped because of `error`: the failure says why and what
    to do. A `dg.Failure` raised below (the resource's missing key) already says so, and is kept as it is."""
    if isinstance(error, dg.Failure):
        return error
    remedy = remedy_for(error)
    reason = str(error).strip() or type(error).__name__
    return dg.Failure(
        description=(
            f"{action} of audience '{audience.key}' (list '{audience.list.name}') stopped: {remedy.problem}. "
            f"{reason}. What to do: {remedy.what_to_do}"
        ),
        metadata={
            "audience": audience.key,
            "problem": remedy.problem,
            "reason": reason,
            "error": type(error).__name__,
            "what_to_do": remedy.what_to_do,
            "retried": remedy.retry,
        },
        allow_retries=remedy.retry,
    )
