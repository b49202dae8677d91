"""GET /contacts: every filter and order of the published description, as SQL over the account's tables.

What each one matches, and what is assumed where the sandbox does not model the thing filtered on (forms,
segments, automations, organizations, scores), is in docs/sandbox.md ("Filters and orders").
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.datastructures import QueryParams

from ac_pipeline.sandbox.emails import normalize
from ac_pipeline.sandbox.query import PAGING, Filter, direction, id_list, moment, order_by, where
from ac_pipeline.sandbox.readcache import id_window
from ac_pipeline.sandbox.responses import bad_request, int_param
from ac_pipeline.sandbox.store import Row, Store

SQLITE_INTEGERS = range(-(2**63), 2**63)
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


@dataclass(frozen=True)
class ContactsQuery:
    """GET /contacts as SQL, with the id bounds (`id_greater`, `id_less`) kept apart from the other filters, so
    that the pages of a read walking the ids share one set of matches (contacts_page)."""

    joins: str  # FROM contacts, and the list's memberships for `listid`
    join_args: list[object]
    filters: list[Filter]  # every filter but the id bounds
    above: int | None
    below: int | None
    order: str  # the ORDER BY terms

    def select(self, columns: str, *, bounded: bool) -> tuple[str, list[object]]:
        """SELECT `columns` of the matches, within the id bounds if `bounded`, unordered; and its arguments."""
        bounds: list[Filter] = [("c.id > ?", [self.above]), ("c.id < ?", [self.below])]
        chosen = [*self.filters, *(bound for bound in bounds if bounded and bound[1][0] is not None)]
        condition, args = where(chosen)
        return f"SELECT {columns}{self.joins}" + (f" WHERE {condition}" if condition else ""), [*self.join_args, *args]

    def id_direction(self) -> str | None:
        """ASC or DESC when the order comes down to the ids (`orders[score]` ranks every contact the same), else
        None."""
        for term in self.order.split(", "):
            column, way = term.rsplit(" ", 1)
            if column != CONTACT_ORDERS["score"]:
                return way if column == "c.id" else None
        return None


def contacts_query(params: QueryParams) -> ContactsQuery:
    """GET /contacts for its filters and orders."""
    listid, status = int_param(params, "listid"), int_param(params, "status")
    status = None if status == -1 else status  # -1, the default, is any status
    joins = " FROM contacts c"
    args: list[object] = []
    filters: list[Filter] = []
    if listid is not None:
        # `status` here is the list status (1 active, 2 unsubscribed, 3 bounced): members of a list.
        joins += " JOIN memberships m ON m.contact_id = c.id AND m.list_id = ?"
        args.append(listid)
        if status is not None:
            joins += " AND m.status = ?"
            args.append(status)
    elif status is not None:
        # Without a list: contacts with that status on some list (assumed; the reference does not say).
        filters.append(("EXISTS (SELECT 1 FROM memberships s WHERE s.contact_id = c.id AND s.status = ?)", [status]))
    for name in ("email", "filters[email]"):
        if params.get(name):
            filters.append(("c.email = ?", [normalize(params[name])]))
    if params.get("email_like"):
        filters.append(("instr(c.email, ?) > 0", [params["email_like"].strip().lower()]))
    above, below, exclude = (int_param(params, name) for name in ("id_greater", "id_less", "exclude"))
    if exclude is not None:
        filters.append(("c.id != ?", [exclude]))
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
    for key in params:
        if key.startswith("orders["):
            direction(params, key)
    return ContactsQuery(joins, args, filters, above, below, order_by(params, CONTACT_ORDERS, "c.id"))


def contacts_page(store: Store, query: ContactsQuery, limit: int, offset: int) -> tuple[list[Row], int]:
    """A page of the matches, and how many match (`meta.total`; the id bounds are filters like the others).

    In id order, the page is cut from the ids of every match but the bounds, which the store keeps while the data
    is unchanged (readcache.py): a read walking a list with `id_greater` costs a page a page, where a query and a
    count over the whole list every page cost it the square of the list."""
    direction = query.id_direction()
    # A bound beyond SQLite's 64-bit integers goes to SQLite all the same, which refuses it (a 500, as it always was).
    bounds_fit = all(bound in SQLITE_INTEGERS for bound in (query.above, query.below) if bound is not None)
    with store.lock:
        if direction is None or not bounds_fit:
            sql, args = query.select("c.*", bounded=True)
            return store.page(f"{sql} ORDER BY {query.order}", args, limit, offset)
        sql, args = query.select("c.id", bounded=False)
        ids = store.reads.ids(sql, args)
        chosen, total = id_window(ids, query.above, query.below, direction == "DESC", limit, offset)
        marks = ",".join("?" * len(chosen))
        rows = store.all(f"SELECT * FROM contacts WHERE id IN ({marks}) ORDER BY id {direction}", chosen)
        return rows, total
