"""Resolve an audience's destination in ActiveCampaign: its list, custom field ids and tags.

Whatever the audience may not create must already exist; a missing list, user group or field is a
configuration error with the fix spelled out, raised before a single contact is sent.
"""

from __future__ import annotations

from dataclasses import dataclass

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


def resolve_list(client: ActiveCampaignClient, audience: Audience) -> tuple[str, bool]:
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


def resolve_fields(client: ActiveCampaignClient, audience: Audience) -> tuple[dict[str, str], list[str]]:
    wanted = list(audience.fields.custom)
    if not wanted:
        return {}, []
    fields = client.list_fields()
    by_title = {str(f.get("title", "")).strip().lower(): str(f["id"]) for f in fields}
    by_tag = {str(f.get("perstag", "")).strip().upper(): str(f["id"]) for f in fields}
    resolved: dict[str, str] = {}
    created: list[str] = []
    for key in wanted:
        tag = _perstag(key)
        field_id = by_tag.get(tag) if tag else by_title.get(key.strip().lower())
        if field_id is None:
            if not audience.fields.create_missing:
                known = ", ".join(sorted(f"{f.get('title')} (%{f.get('perstag')}%)" for f in fields)) or "none"
                raise DestinationError(
                    f"audience {audience.key!r}: no custom field {key!r} in ActiveCampaign (known: {known}). "
                    "Create it under Contacts -> Fields, fix the name in fields.custom, "
                    "or set fields.create_missing: true"
                )
            title = tag.replace("_", " ").title() if tag else key
            body = {"field": {"type": "text", "title": title, "perstag": tag or ""}}
            field_id = str(client.request("POST", "fields", json=body)["field"]["id"])
            created.append(key)
        resolved[key] = field_id
    return resolved, created


def resolve(client: ActiveCampaignClient, audience: Audience) -> Destination:
    list_id, created_list = resolve_list(client, audience)
    field_ids, created_fields = resolve_fields(client, audience)
    return Destination(list_id, field_ids, created_list, tuple(created_fields))
