"""The shape of audiences.yaml: one pydantic model per section (source, audiences, their list, fields,
exclusions and removal guard), and the error every check of the file raises.

Each model checks what it can alone (a key that is a partition key, table and column names that are
identifiers, an email mapping). Reading the file and the checks that span audiences or need SQL are in
`config.py`.
"""

from __future__ import annotations

import builtins
import re
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ac_pipeline.audiences.sql import check_identifier, check_table_name

# A partition key: it appears in URLs, file names and the UI.
KEY_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_\-]{0,62}$")


class AudienceConfigError(ValueError):
    """audiences.yaml says something the pipeline cannot do; the message names the audience and the fix."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ListTarget(_Strict):
    """The ActiveCampaign list an audience becomes."""

    name: str = Field(min_length=1)
    # Create the list when no list of that name exists; otherwise a missing list is an error.
    create: bool = False
    # The user group the list is granted to (ActiveCampaign hides a list granted to no group).
    group: str = "Admin"
    sender_url: str = "https://example.com"
    sender_reminder: str = "You are receiving this because you are a customer of ours."


# How a mapped field is written (audiences/modes.py): `overwrite` sends the customer 360's value, empty or not;
# `never_clear` never sends an empty value; `fill` writes only where ActiveCampaign's value is empty.
FieldMode = Literal["overwrite", "fill", "never_clear"]
FIELD_MODES: tuple[str, ...] = get_args(FieldMode)
# Which changes an audience makes to its list: `mirror` adds, updates and removes; `upsert` never removes;
# `update_only` never creates a contact, and only updates and subscribes those the account already holds.
SyncMode = Literal["mirror", "upsert", "update_only"]
SYNC_MODES: tuple[str, ...] = get_args(SyncMode)
_MODE_EXAMPLE = "e.g. `custom: {City: {column: city, mode: fill}}` or `phone: {column: phone, mode: never_clear}`"


def _split_long_form(key: str, name: str, value: Any, modes: dict[str, str]) -> Any:
    """`{column, mode}` -> the column (or expression), with its mode noted in `modes[key]`; a short form as it
    is. `name` is the setting as the file writes it, for messages."""
    if not isinstance(value, dict):
        return value
    unknown = sorted(set(value) - {"column", "mode"})
    if unknown or "column" not in value:
        raise ValueError(
            f"{name}: the long form takes `column` (required) and `mode`"
            + (f", not {', '.join(map(repr, unknown))}" if unknown else "")
            + f"; {_MODE_EXAMPLE}"
        )
    mode = value.get("mode", "overwrite")
    if mode not in FIELD_MODES:
        raise ValueError(f"{name}: mode {mode!r} is not a write mode; use one of {', '.join(FIELD_MODES)}")
    if mode != "overwrite":
        modes[key] = mode
    return value["column"]


class FieldMapping(_Strict):
    """Which customer 360 column (or SQL expression over it) fills each ActiveCampaign contact field.

    A field is mapped in the short form (`first_name: first_name`) or the long form with a write mode
    (`first_name: {column: first_name, mode: fill}`); the long form is taken apart on reading, so that the
    mapping holds expressions only and `modes` the fields whose mode is not `overwrite`.
    """

    email: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    phone: str | None = None
    # ActiveCampaign custom field, by its title ("Lifetime value") or personalisation tag
    # ("%LIFETIME_VALUE%"), -> column or expression.
    custom: dict[str, str] = Field(default_factory=dict)
    # Create a custom field (text) in ActiveCampaign when none has that title or tag; otherwise a
    # missing field is an error to fix in ActiveCampaign.
    create_missing: bool = False
    # Field ("first_name", "last_name", "phone" or a custom field's title as above) -> its write mode, for the
    # fields written in the long form with a mode other than `overwrite`. Filled from the long forms only.
    modes: dict[str, FieldMode] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _long_forms(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        if "modes" in data:
            raise ValueError(f"write modes go with their field, not under `modes`: {_MODE_EXAMPLE}")
        data, modes = dict(data), dict[str, str]()
        if isinstance(data.get("email"), dict):
            raise ValueError(
                "email takes a column or expression only: it identifies the contact, so it is always written"
            )
        for name in ("first_name", "last_name", "phone"):
            data[name] = _split_long_form(name, name, data.get(name), modes)
        if isinstance(data.get("custom"), dict):
            data["custom"] = {
                title: _split_long_form(title, f"custom[{title!r}]", value, modes)
                for title, value in data["custom"].items()
            }
        data["modes"] = modes
        return data

    def mode(self, name: str) -> FieldMode:
        """The write mode of a standard field ("first_name") or custom field (its title)."""
        return self.modes.get(name, "overwrite")

    def expressions(self) -> dict[str, str]:
        """Output column name -> SQL expression, for the standard fields that are mapped."""
        standard = {"first_name": self.first_name, "last_name": self.last_name, "phone": self.phone}
        return {name: expr for name, expr in standard.items() if expr}


class Exclusions(_Strict):
    audiences: list[str] = Field(default_factory=list)
    # A table in the customer 360 database with an `email` column (a do-not-contact list).
    suppression_table: str | None = None
    emails: list[str] = Field(default_factory=list)

    @field_validator("suppression_table")
    @classmethod
    def _a_table_name(cls, name: str | None) -> str | None:
        return None if name is None else check_table_name(name)


class RemovalGuard(_Strict):
    """Stop a sync that would remove an unusual part of the list, until a person confirms."""

    max_share: float = Field(default=0.20, ge=0, le=1)
    max_count: int | None = Field(default=None, ge=0)
    # Below this many synced members, shares swing too much to mean anything.
    min_list_size: int = Field(default=20, ge=0)


class Alerts(_Strict):
    """When the alert webhook (AC_PIPELINE_ALERT_WEBHOOK) hears about an audience, besides failed syncs and a
    blocked removal guard (ac_pipeline/alerts.py)."""

    # Rows the audience selects whose email would be refused, or contacts ActiveCampaign refused in a push.
    rejected_share: float = Field(default=0.05, ge=0, le=1)
    # The audience shrank by more than this share since its previous computation.
    size_drop_share: float = Field(default=0.30, ge=0, le=1)
    # Below this many members before a drop, shares swing too much to mean anything (as for the removal guard).
    min_members: int = Field(default=20, ge=0)


class Group(_Strict):
    """One group of an audience (treatment, control, an A/B variant): its share, and what its members get."""

    share: float = Field(gt=0, le=1)
    # False: a control group, recorded in the sync state and never sent to ActiveCampaign.
    send: bool = True
    # A tag ActiveCampaign puts on this group's contacts (on top of the audience's tags), e.g. `variant-a`.
    tag: str | None = Field(default=None, min_length=1)


# Shares are written as decimals (0.9 + 0.1 is not exactly 1.0 in floating point).
SHARE_TOLERANCE = 1e-9


class Audience(_Strict):
    key: str
    description: str = ""
    list: ListTarget
    condition: str = Field(min_length=1)
    exclude: Exclusions = Field(default_factory=Exclusions)
    fields: FieldMapping
    # `builtins.list`: the field `list` above hides the built-in inside this class.
    tags: builtins.list[str] = Field(default_factory=builtins.list)
    removal_guard: RemovalGuard = Field(default_factory=RemovalGuard)
    alerts: Alerts = Field(default_factory=Alerts)
    # Contacts on the list that the sync did not put there (added by hand, by a form): `keep` leaves them
    # alone, `remove` takes them in so that the next sync removes those outside the audience (the removal
    # guard still applies). Reported by the read-back either way.
    unmanaged: Literal["keep", "remove"] = "keep"
    # The read-back's drift check warns when more than this share of the list drifted since the last sync.
    drift_warning_share: float = Field(default=0.05, ge=0, le=1)
    # Imported contacts start automations unless excluded; most list syncs must not trigger them.
    exclude_automations: bool = True
    # Treatment and control groups (audiences/groups.py): name -> share, send, tag. Empty: no groups.
    groups: dict[str, Group] = Field(default_factory=dict)
    # What the group hash mixes in with the customer id (default: the audience key). A new salt draws new groups.
    salt: str | None = Field(default=None, min_length=1)
    # Which changes the sync makes to the list (see SyncMode above, and README "Sync modes and field write modes").
    sync_mode: SyncMode = "mirror"

    @field_validator("key")
    @classmethod
    def _key_is_a_partition_key(cls, key: str) -> str:
        if not KEY_PATTERN.match(key):
            raise ValueError(
                f"key {key!r} must be lower-case letters, digits, '_' or '-' (at most 63), e.g. 'vip_customers'"
            )
        return key

    @field_validator("sync_mode", mode="before")
    @classmethod
    def _a_sync_mode(cls, mode: Any) -> Any:
        if mode not in SYNC_MODES:
            raise ValueError(
                f"sync_mode {mode!r} is not a sync mode; use mirror (add, update and remove), upsert (never remove) "
                "or update_only (never create contacts)"
            )
        return mode

    @model_validator(mode="after")
    def _email_is_mapped(self) -> Audience:
        if not self.fields.email:
            raise ValueError("fields.email is required: name the customer 360 column that holds the email address")
        return self

    @model_validator(mode="after")
    def _groups_split_the_audience(self) -> Audience:
        if self.salt is not None and not self.groups:
            raise ValueError("salt is set but no groups are: declare groups, or remove salt")
        if self.groups:
            total = sum(group.share for group in self.groups.values())
            if abs(total - 1) > SHARE_TOLERANCE:
                shares = ", ".join(f"{name} {group.share:g}" for name, group in self.groups.items())
                raise ValueError(f"group shares must sum to 1, but {shares} sum to {total:g}; adjust the shares")
            if not any(group.send for group in self.groups.values()):
                raise ValueError("every group has send: false, so nobody would be sent; let at least one group send")
            tags = [group.tag.casefold() for group in self.groups.values() if group.tag]
            if len(tags) != len(set(tags)):
                raise ValueError("two groups carry the same tag; give each group a tag of its own (or none)")
            if set(tags) & {tag.casefold() for tag in self.tags}:
                raise ValueError(
                    "a group's tag is also one of the audience's tags (which every member gets); rename it"
                )
            for name, group in self.groups.items():
                if not KEY_PATTERN.match(name):
                    raise ValueError(f"group name {name!r} must be lower-case letters, digits, '_' or '-'")
                if group.tag and not group.send:
                    raise ValueError(f"group {name!r} has send: false and a tag: a group never sent carries no tag")
        return self

    @property
    def group_tags(self) -> dict[str, str]:
        """Group -> the tag its contacts carry, for the groups that have one."""
        return {name: group.tag for name, group in self.groups.items() if group.tag}

    @property
    def salt_or_key(self) -> str:
        return self.salt or self.key

    @model_validator(mode="after")
    def _modes_agree(self) -> Audience:
        mapped = set(self.fields.expressions()) | set(self.fields.custom)
        unmapped = sorted(set(self.fields.modes) - mapped)
        if unmapped:
            raise ValueError(f"fields: a write mode for {', '.join(unmapped)}, which maps no column; map a column")
        if self.unmanaged == "remove" and self.sync_mode != "mirror":
            raise ValueError(
                f"unmanaged: remove takes contacts in so that the sync removes them, but sync_mode {self.sync_mode} "
                "never removes anyone; use unmanaged: keep, or sync_mode: mirror"
            )
        return self


class Source(_Strict):
    """Where the customer rows are, and the columns that identify and date them."""

    table: str = "customers"
    id_column: str = "customer_id"
    # When a row last changed: among rows sharing an email, the most recent one wins.
    updated_column: str = "updated_at"

    @field_validator("table")
    @classmethod
    def _a_table_name(cls, name: str) -> str:
        return check_table_name(name)

    @field_validator("id_column", "updated_column")
    @classmethod
    def _a_column_name(cls, name: str) -> str:
        return check_identifier(name)


class AudienceFile(_Strict):
    source: Source = Field(default_factory=Source)
    audiences: list[Audience]

    @property
    def by_key(self) -> dict[str, Audience]:
        return {audience.key: audience for audience in self.audiences}

    @property
    def keys(self) -> list[str]:
        return [audience.key for audience in self.audiences]

    def get(self, key: str) -> Audience:
        try:
            return self.by_key[key]
        except KeyError:
            raise AudienceConfigError(
                f"no audience {key!r} in audiences.yaml (known: {', '.join(self.keys)}); "
                "reload the code location after editing the file"
            ) from None
