"""Resolve an audience's destination in ActiveCampaign: its list, custom field ids and tags.

Whatever the audience may not create must already exist; a missing list, user group or field is a
configuration error with the fix spelled out, raised before a single contact is sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ac_pipeline.activecampaign import ActiveCampaignClient
from ac_pipeline.audiences.config import Audience


class DestinationError(RuntimeError):
    """The audience's list, group or fields do not exist in ActiveCampaign as configured."""


@dataclass(frozen=True)
class Destination:
    list_id: str
    # custom field title (as written in audiences.yaml) -> ActiveCampaign field id
    field_ids: dict[str, str]
    created_list: bool = False
    created_fields: tuple[str, ...] = ()


def _perstag(key: str) -> str | None:
    key = key.strip()
    return key.strip("%").upper() if key.startswith("%") and key.endswith("%") and len(key) > 2 else None


def resolve_list(client: ActiveCampaignClient, audience: Audience, known_id: str | None = None) -> tuple[str, bool]:
    """The list's id (`known_id` when the caller just looked it up), creating the list if allowed."""
    if known_id is not None:
        return known_id, False
    target = audience.list
    found = client.find_list(target.name)
    if found is not None:
        return str(found["id"]), False
    if not target.create:
        raise DestinationError(
            f"audience {audience.key!r}: ActiveCampaign has no list named {target.name!r} that this API key can see. "
            "Create it in ActiveCampaign (Contacts -> Lists), grant it to the key's user group, "
            "or set list.create: true in audiences.yaml"
        )
    group = client.find_group(target.group)
    if group is None:
        titles = ", ".join(g.get("title", "?") for g in client.list_groups())
        raise DestinationError(
            f"audience {audience.key!r}: no user group titled {target.group!r} in ActiveCampaign (there are: {titles}). "
            "Fix list.group in audiences.yaml, or create the group under Settings -> Users"
        )
    created = client.create_list(target.name, sender_url=target.sender_url, sender_reminder=target.sender_reminder)
    # A new list belongs to no user group and stays invisible in the app until granted to one.
    client.grant_list_to_group(created["id"], group["id"])
    return str(created["id"]), True


def match_fields(fields: list[dict[str, Any]], audience: Audience) -> tuple[dict[str, str], list[str]]:
    """The audience's custom fields found among the account's `fields` (title -> id), and the titles not
    found. A `%PERSTAG%` key matches the field's personalisation tag; any other key its title, ignoring case."""
    by_title = {str(f.get("title", "")).strip().lower(): str(f["id"]) for f in fields}
    by_tag = {str(f.get("perstag", "")).strip().upper(): str(f["id"]) for f in fields}
    resolved: dict[str, str] = {}
    missing: list[str] = []
    for key in audience.fields.custom:
        tag = _perstag(key)
        field_id = by_tag.get(tag) if tag else by_title.get(key.strip().lower())
        if field_id is None:
            missing.append(key)
        else:
            resolved[key] = field_id
    return resolved, missing


def resolve_fields(client: ActiveCampaignClient, audience: Audience) -> tuple[dict[str, str], list[str]]:
    if not audience.fields.custom:
        return {}, []
    fields = client.list_fields()
    resolved, missing = match_fields(fields, audience)
    if missing and not audience.fields.create_missing:
        known = ", ".join(sorted(f"{f.get('title')} (%{f.get('perstag')}%)" for f in fields)) or "none"
        raise DestinationError(
            f"audience {audience.key!r}: no custom field {missing[0]!r} in ActiveCampaign (known: {known}). "
            "Create it under Contacts -> Fields, fix the name in fields.custom, "
            "or set fields.create_missing: true"
        )
    for key in missing:
        tag = _perstag(key)
        title = tag.replace("_", " ").title() if tag else key
        body = {"field": {"type": "text", "title": title, "perstag": tag or ""}}
        resolved[key] = str(client.request("POST", "fields", json=body)["field"]["id"])
    # In the audience's order: payloads list the fields in that order.
    return {key: resolved[key] for key in audience.fields.custom}, missing


def resolve(client: ActiveCampaignClient, audience: Audience, known_list_id: str | None = None) -> Destination:
    list_id, created_list = resolve_list(client, audience, known_list_id)
    field_ids, created_fields = resolve_fields(client, audience)
    return Destination(list_id, field_ids, created_list, tuple(created_fields))
