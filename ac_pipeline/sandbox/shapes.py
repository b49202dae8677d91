"""How stored rows look on the wire: the published ActiveCampaign shapes, ids as strings.

Fields the sandbox does not model carry the neutral values the real service shows for a fresh account
("0", "", null), so clients that read them see the real types.
"""

from __future__ import annotations

import hashlib
from typing import Any

from ac_pipeline.sandbox.store import Row

CONTACT_LINKS = (
    "bounceLogs",
    "contactAutomations",
    "contactData",
    "contactGoals",
    "contactLists",
    "contactLogs",
    "contactTags",
    "contactDeals",
    "deals",
    "fieldValues",
    "geoIps",
    "notes",
    "organization",
    "plusAppend",
    "trackingLogs",
    "scoreValues",
)
CONTACT_LIST_LINKS = (
    "automation",
    "list",
    "contact",
    "form",
    "autosyncLog",
    "campaign",
    "unsubscribeAutomation",
    "message",
)
GROUP_LINKS = ("userGroups", "groupLimit", "dealGroupGroups", "listGroups", "addressGroups", "automationGroups")
# Every permission the real admin group has; the sandbox grants them all and enforces none.
GROUP_PERMISSIONS = (
    "pgListAdd",
    "pgListEdit",
    "pgListDelete",
    "pgListHeaders",
    "pgListEmailaccount",
    "pgListBounce",
    "pgMessageAdd",
    "pgMessageEdit",
    "pgMessageDelete",
    "pgMessageSend",
    "pgContactAdd",
    "pgContactEdit",
    "pgContactDelete",
    "pgContactMerge",
    "pgContactImport",
    "pgContactApprove",
    "pgContactExport",
    "pgContactSync",
    "pgContactFilters",
    "pgContactActions",
    "pgContactFields",
    "pg_user_add",
    "pg_user_edit",
    "pg_user_delete",
    "pgGroupAdd",
    "pgGroupEdit",
    "pgGroupDelete",
    "pgTemplateAdd",
    "pgTemplateEdit",
    "pgTemplateDelete",
    "pgPersonalizationAdd",
    "pgPersonalizationEdit",
    "pgPersonalizationDelete",
    "pgAutomationManage",
    "pgFormEdit",
    "pgReportsCampaign",
    "pgReportsList",
    "pgReportsUser",
    "pgReportsTrend",
    "pgStartupReports",
    "pgStartupGettingstarted",
    "pgDeal",
    "pgDealDelete",
    "pgDealReassign",
    "pgDealGroupAdd",
    "pgDealGroupEdit",
    "pgDealGroupDelete",
    "pgSavedResponsesManage",
)


def links(base: str, collection: str, item_id: Any, names: tuple[str, ...]) -> dict[str, str]:
    prefix = f"{base}/api/3/{collection}/{item_id}/"  # once, not once a link: a page of contacts has thousands
    return {name: prefix + name for name in names}


def utc_stamp(iso: str) -> str:
    """2018-10-01T17:18:40-05:00 -> 2018-10-01 17:18:40 (the *_utc_timestamp style; offset dropped)."""
    return iso[:19].replace("T", " ")


def contact_json(row: Row, base: str) -> dict[str, Any]:
    return {
        "cdate": row["cdate"],
        "email": row["email"],
        "phone": row["phone"],
        "firstName": row["first_name"],
        "lastName": row["last_name"],
        "orgid": "0",
        "segmentio_id": "",
        "bounced_hard": str(row["bounced_hard"]),
        "bounced_soft": str(row["bounced_soft"]),
        "bounced_date": row["bounced_date"] or "0000-00-00",
        "ip": "0",
        "ua": "",
        "hash": hashlib.md5(row["email"].encode()).hexdigest(),
        "socialdata_lastcheck": "0000-00-00 00:00:00",
        "email_local": "",
        "email_domain": "",
        "sentcnt": "0",
        "rating_tstamp": "0000-00-00",
        "gravatar": "0",
        "deleted": "0",
        "anonymized": "0",
        "adate": row["udate"],
        "udate": row["udate"],
        "edate": row["udate"],
        "deleted_at": "0000-00-00 00:00:00",
        "created_utc_timestamp": utc_stamp(row["cdate"]),
        "updated_utc_timestamp": utc_stamp(row["udate"]),
        "scoreValues": [],
        "links": links(base, "contacts", row["id"], CONTACT_LINKS),
        "id": str(row["id"]),
        "organization": None,  # organizations (accounts) are not modelled: null, as for a contact without one
    }


def id_or_none(value: int | None) -> str | None:
    return None if value is None else str(value)


def contact_list_json(row: Row, contact: Row, base: str, *, status_as_int: bool) -> dict[str, Any]:
    """A membership; POST /contactLists answers its status as a number, the GETs as a string. The unsubscribe
    fields say how a status 2 came about (provenance.py); `ip4Unsub` is the address as a 32-bit number."""
    return {
        "contact": str(row["contact_id"]),
        "list": str(row["list_id"]),
        "form": None,
        "seriesid": "0",
        "sdate": row["sdate"],
        "udate": row["udate"],
        "status": row["status"] if status_as_int else str(row["status"]),
        "responder": "1",
        "sync": "0",
        "unsubreason": row["unsubreason"],
        "campaign": id_or_none(row["campaign_id"]),
        "message": id_or_none(row["message_id"]),
        "first_name": contact["first_name"],
        "last_name": contact["last_name"],
        "ip4Sub": "0",
        "sourceid": str(row["sourceid"]),
        "autosyncLog": None,
        "ip4_last": "0",
        "ip4Unsub": str(row["ip4_unsub"]),
        "created_timestamp": utc_stamp(row["sdate"]),
        "updated_timestamp": utc_stamp(row["udate"]),
        "created_by": None,
        "updated_by": None,
        "unsubscribeAutomation": id_or_none(row["automation_id"]),
        "links": links(base, "contactLists", row["id"], CONTACT_LIST_LINKS),
        "id": str(row["id"]),
        "automation": None,
    }


def field_value_json(row: Row, base: str) -> dict[str, Any]:
    return {
        "contact": str(row["contact_id"]),
        "field": str(row["field_id"]),
        "value": row["value"],
        "cdate": row["cdate"],
        "udate": row["udate"],
        "created_by": "0",
        "updated_by": "0",
        "links": links(base, "fieldValues", row["id"], ("owner", "field")),
        "id": str(row["id"]),
        "owner": str(row["contact_id"]),
    }


def list_json(row: Row, base: str) -> dict[str, Any]:
    return {
        "stringid": row["stringid"],
        "userid": "1",
        "name": row["name"],
        "cdate": row["cdate"],
        "p_use_tracking": "1",
        "p_use_analytics_read": "0",
        "p_use_analytics_link": "0",
        "p_use_twitter": "0",
        "p_use_facebook": "0",
        "p_embed_image": "1",
        "p_use_captcha": "1",
        "send_last_broadcast": "0",
        "private": "0",
        "analytics_domains": None,
        "analytics_source": "",
        "analytics_ua": "",
        "twitter_token": "",
        "twitter_token_secret": "",
        "facebook_session": None,
        "carboncopy": None,
        "subscription_notify": None,
        "unsubscription_notify": None,
        "require_name": "0",
        "get_unsubscribe_reason": "0",
        "to_name": "Subscriber",
        "optinoptout": "1",
        "sender_name": "",
        "sender_addr1": "",
        "sender_addr2": "",
        "sender_city": "",
        "sender_state": "",
        "sender_zip": "",
        "sender_country": "",
        "sender_phone": "",
        "sender_url": row["sender_url"],
        "sender_reminder": row["sender_reminder"],
        "fulladdress": "",
        "optinmessageid": "0",
        "optoutconf": "0",
        "deletestamp": None,
        "udate": row["cdate"],
        # A list's own record never changes in the sandbox (there is no list update), so it was last updated
        # when created; memberships are not part of it.
        "created_timestamp": utc_stamp(row["cdate"]),
        "updated_timestamp": utc_stamp(row["cdate"]),
        "created_by": None,
        "updated_by": None,
        "links": links(base, "lists", row["id"], ("contactGoalLists", "user", "addressLists")),
        "id": str(row["id"]),
        "user": "1",
    }


def group_json(row: Row, base: str) -> dict[str, Any]:
    """A user group as GET /groups shows it (flags as strings)."""
    return {
        "title": row["title"],
        "descript": row["descript"],
        "unsubscribelink": "0",
        "optinconfirm": "0",
        "p_admin": "1",
        **{permission: "1" for permission in GROUP_PERMISSIONS},
        "sdate": row["cdate"],
        "reqApproval": "0",
        "reqApproval1st": "2",
        "reqApprovalNotify": "",
        "socialdata": "0",
        "links": links(base, "groups", row["id"], GROUP_LINKS),
        "id": str(row["id"]),
    }


def created_group_json(row: Row, base: str) -> dict[str, Any]:
    """A user group as POST /groups answers it (p_admin as a number)."""
    return {
        "title": row["title"],
        "descript": row["descript"],
        "p_admin": 1,
        "links": links(base, "groups", row["id"], GROUP_LINKS),
        "id": str(row["id"]),
    }


def list_group_json(row: Row, base: str) -> dict[str, Any]:
    return {
        "list": row["list_id"],
        "group": row["group_id"],
        "links": links(base, "listGroups", row["id"], ("list", "group")),
        "id": str(row["id"]),
    }


def tag_json(row: Row, base: str) -> dict[str, Any]:
    return {
        "tagType": row["tag_type"],
        "tag": row["tag"],
        "description": row["description"],
        "cdate": row["cdate"],
        "links": links(base, "tags", row["id"], ("contactGoalTags",)),
        "id": str(row["id"]),
    }


def contact_tag_json(row: Row, base: str) -> dict[str, Any]:
    return {
        "cdate": row["cdate"],
        "contact": str(row["contact_id"]),
        "id": str(row["id"]),
        "links": links(base, "contactTags", row["id"], ("contact", "tag")),
        "tag": str(row["tag_id"]),
    }


def field_json(row: Row, base: str) -> dict[str, Any]:
    return {
        "title": row["title"],
        "descript": None,
        "type": row["type"],
        "isrequired": "0",
        "perstag": row["perstag"],
        "defval": None,
        "show_in_list": "0",
        "rows": "0",
        "cols": "0",
        "visible": "1",
        "service": "",
        "ordernum": str(row["id"]),
        "cdate": row["cdate"],
        "udate": row["cdate"],
        "options": [],
        "relations": [],
        "links": links(base, "fields", row["id"], ("options", "relations")),
        "id": str(row["id"]),
    }
