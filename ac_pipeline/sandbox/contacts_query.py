"""GET /contacts: every filter and order of the published description, as SQL over the account's tables.

What each one matches, and what is assumed where the sandbox does not model the thing filtered on (forms,
segments, automations, organizations, scores), is in docs/sandbox.md ("Filters and orders").
"""

from __future__ import annotations

from starlette.datastructures import QueryParams

from ac_pipeline.sandbox.emails import normalize
from ac_pipeline.sandbox.query import PAGING, Filter, direction, id_list, moment, order_by, where
from ac_pipeline.sandbox.responses import bad_request, int_param

# What the sandbox can side-load with `include=` (comma-separated).
SIDELOADS = ("contactLists", "contactTags", "fieldValues")
# Filters on things the sandbox has none of: every contact has 0 there (no form, segment, automation,
# organization), so a non-zero id matches no contact and 0 means "no filter", as `page_input` shows it.
NONE_MODELLED = ("formid", "segmentid", "seriesid", "waitid", "organization")
CONTACT_ORDERS = {
    "id": "c.id",
    "cdate": "datetime(c.cdate)",
    "email": "c.email",
    "first_name": "lower(c.first_name)",
    "last_name": "lower(c.last_name)",
    "name": "lower(c.first_name || ' ' || c.last_name)",
    "score": "NULL",  # no contact has a score: every one ranks the same (then by id)
}
CONTACT_PARAMS = (
    "ids",
    "ids[]",
    "email",
    "email_like",
    "exclude",
    "id_greater",
    "id_less",
    "listid",
    "phone",
    "search",
    "status",
    "tagid",
    "filters[email]",
    "filters[created_before]",
    "filters[created_after]",
    "filters[updated_before]",
    "filters[updated_after]",
    *NONE_MODELLED,
    *(f"orders[{name}]" for name in CONTACT_ORDERS),
    "in_group_lists",
    "forceQuery",
    "sortId",
    "include",
    *PAGING,
)


def includes(params: QueryParams) -> list[str]:
    """The side-loads asked for with `include=`; 400 naming any the sandbox does not serve."""
    names = [name for name in params.get("include", "").split(",") if name]
    unknown = [name for name in names if name not in SIDELOADS]
    if unknown:
        raise bad_request(
            f"include={','.join(unknown)} is not served by the sandbox; it side-loads {', '.join(SIDELOADS)}."
        )
    return names


def flag(params: QueryParams, name: str, allowed: tuple[str, ...]) -> None:
    value = params.get(name)
    if value is not None and value.lower() not in allowed:
        raise bad_request(f"{name} must be one of {', '.join(allowed)}, got {value!r}.")


def contacts_query(params: QueryParams) -> tuple[str, list[object], str]:
    """The SELECT of GET /contacts for its filters (without ORDER BY), its arguments, and the ORDER BY."""
    listid, status = int_param(params, "listid"), int_param(params, "status")
    status = None if status == -1 else status  # -1, the default, is any status
    sql = "SELECT c.* FROM contacts c"
    args: list[object] = []
    filters: list[Filter] = []
    if listid is not None:
        # `status` here is the list status (1 active, 2 unsubscribed, 3 bounced): members of a list.
        sql += " JOIN memberships m ON m.contact_id = c.id AND m.list_id = ?"
        args.append(listid)
        if status is not None:
            sql += " AND m.status = ?"
            args.append(status)
    elif status is not None:
        # Without a list: contacts with that status on some list (assumed; the reference does not say).
        filters.append(("EXISTS (SELECT 1 FROM memberships s WHERE s.contact_id = c.id AND s.status = ?)", [status]))
    for name in ("email", "filters[email]"):
        if params.get(name):
            filters.append(("c.email = ?", [normalize(params[name])]))
    if params.get("email_like"):
        filters.append(("instr(c.email, ?) > 0", [params["email_like"].strip().lower()]))
    for name, sql_condition in (("id_greater", "c.id > ?"), ("id_less", "c.id < ?"), ("exclude", "c.id != ?")):
        value = int_param(params, name)
        if value is not None:
            filters.append((sql_condition, [value]))
    ids = id_list(params, "ids[]", "ids")
    if ids is not None:
        filters.append((f"c.id IN ({','.join('?' * len(ids))})", ids))
    tagid = int_param(params, "tagid")
    if tagid:
        filters.append(("EXISTS (SELECT 1 FROM contact_tags t WHERE t.contact_id = c.id AND t.tag_id = ?)", [tagid]))
    if params.get("phone"):
        phone = params["phone"]
        filters.append((f"substr(c.phone, 1, {len(phone)}) = ?", [phone]))
    if params.get("search"):
        text = params["search"].strip().lower()
        haystack = "lower(c.email || ' ' || c.first_name || ' ' || c.last_name || ' ' || c.phone)"
        names = "lower(c.first_name || ' ' || c.last_name)"
        filters.append((f"instr({haystack}, ?) > 0 OR instr({names}, ?) > 0", [text, text]))
    for name, column, operator in (
        ("filters[created_before]", "c.cdate", "<"),
        ("filters[created_after]", "c.cdate", ">"),
        ("filters[updated_before]", "c.udate", "<"),
        ("filters[updated_after]", "c.udate", ">"),
    ):
        when = moment(params, name)
        if when is not None:
            filters.append((f"datetime({column}) {operator} ?", [when]))
    for name in NONE_MODELLED:
        value = int_param(params, name)
        if value:
            filters.append(("0 = ?", [value]))
    flag(params, "in_group_lists", ("true", "false"))  # the one user is an admin: sees every list anyway
    flag(params, "forceQuery", ("0", "1"))
    int_param(params, "sortId")
    condition, condition_args = where(filters)
    if condition:
        sql += f" WHERE {condition}"
        args += condition_args
    for key in params:
        if key.startswith("orders["):
            direction(params, key)
    return sql, args, order_by(params, CONTACT_ORDERS, "c.id")
