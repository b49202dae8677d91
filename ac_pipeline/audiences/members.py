"""From customer 360 rows to the contacts of an audience.

DuckDB selects the audience's rows and mapped fields (it filters and projects fastest, next to the
data); Polars then does the row-level rules, all vectorised:

- Emails are normalised by trimming white space (including no-break and zero-width spaces, which
  copy-paste leaves behind) and lower-casing. Nothing more: dots and `+tags` in the local part name
  different mailboxes for ActiveCampaign, so folding them would merge different people.
- Emails are validated; a row that fails keeps its reason (`status = rejected`).
- One contact per email. When several customer rows share an address the most recently updated row
  wins (it holds the freshest names and values), ties going to the lowest customer id so the choice is
  stable; the others are kept as `status = duplicate`, naming the winner.
- Exclusions (other audiences, a suppression table, listed emails) are applied after normalisation,
  so `  Foo@Example.com ` on a do-not-contact list excludes `foo@example.com`.

The result holds every selected row with its status; members are the rows with `status = member`.
`fields_hash` fingerprints what is sent to ActiveCampaign (mapped fields and tags), so a change in
anything else about a customer never costs a request.
"""

from __future__ import annotations

import json

import duckdb
import polars as pl

from ac_pipeline.audiences.config import Audience, AudienceConfigError, Source

# Characters people paste around addresses that str.strip() alone would miss.
_PADDING = " \t\r\n\u00a0\u2007\u202f\u200b\u200c\u200d\ufeff"
_ATOM = r"[a-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LOCAL = rf"{_ATOM}(\.{_ATOM})*"
_DOMAIN = r"([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]([a-z0-9-]{0,61}[a-z0-9])"
_LOCAL_PART, _DOMAIN_PART = f"^{_LOCAL}$", f"^{_DOMAIN}$"
# One pass over every address; the detailed reasons below are worked out only for the few that fail.
_VALID_EMAIL = f"^{_LOCAL}@{_DOMAIN}$"

STANDARD_FIELDS = ("first_name", "last_name", "phone")


def field_column(title: str) -> str:
    """Column name of a custom field in the members table."""
    return f"field:{title}"


def _text(expression: str) -> str:
    return f"CAST(({expression}) AS VARCHAR)"


def select_sql(audience: Audience, source: Source) -> str:
    """The DuckDB query for one audience: its rows, every mapped value as text, and `fields_hash`.

    `fields_hash` fingerprints what is sent to ActiveCampaign: md5 over the mapped values joined by a
    unit separator, NULL written as a NUL byte so that NULL and '' differ, and the audience's tags
    folded in so that changing them updates every contact. DuckDB computes it inside the scan, on
    every core, and md5 is the same in every version (Polars' own hash is not promised stable).
    """
    mapped = audience.fields.expressions()
    values = {name: mapped.get(name) for name in STANDARD_FIELDS}
    values |= {field_column(title): expression for title, expression in audience.fields.custom.items()}
    columns = [
        f"{source.id_column} AS customer_id",
        f"{source.updated_column} AS updated_at",
        f"{_text(audience.fields.email)} AS email_raw",
    ]
    columns += [f'{_text(expr) if expr else "NULL::VARCHAR"} AS "{name}"' for name, expr in values.items()]
    hashed = [f"coalesce({_text(expr)}, chr(0))" if expr else "chr(0)" for expr in values.values()]
    tags = json.dumps(sorted(audience.tags)).replace("'", "''")
    columns.append(f"md5(concat_ws(chr(31), {', '.join(hashed)}, '{tags}')) AS fields_hash")
    return f"SELECT {', '.join(columns)} FROM {source.table} WHERE ({audience.condition})"


def emails_sql(audience: Audience, source: Source) -> str:
    """Only the emails of an audience's rows (for excluding it from another audience)."""
    return f"SELECT {_text(audience.fields.email)} AS email_raw FROM {source.table} WHERE ({audience.condition})"


def normalise_email(column: pl.Expr) -> pl.Expr:
    return column.str.strip_chars(_PADDING).str.to_lowercase()


def email_rejection(email: pl.Expr) -> pl.Expr:
    """Why a normalised email cannot be sent to ActiveCampaign, or null when it can."""
    local = email.str.extract(r"^([^@]*)@", 1)
    domain = email.str.extract(r"@([^@]*)$", 1)
    return (
        pl.when(email.is_null() | (email == ""))
        .then(pl.lit("email missing"))
        .when(email.str.len_chars() > 254)
        .then(pl.lit("email longer than 254 characters"))
        .when(email.str.contains(r"\s"))
        .then(pl.lit("email contains white space"))
        .when(email.str.count_matches("@") != 1)
        .then(pl.lit("email must contain exactly one '@'"))
        .when(~email.str.contains(r"^[\x00-\x7f]*$"))
        .then(pl.lit("email has non-ASCII characters"))
        .when(~local.str.contains(_LOCAL_PART) | (local.str.len_chars() > 64))
        .then(pl.lit("invalid local part (before '@')"))
        .when(~domain.str.contains(_DOMAIN_PART))
        .then(pl.lit("invalid domain (after '@')"))
        .otherwise(pl.lit(None, dtype=pl.String))
    )


def email_is_valid(email: pl.Expr) -> pl.Expr:
    """The fast test: true exactly when `email_rejection` gives no reason."""
    return (
        email.str.contains(_VALID_EMAIL).fill_null(False) & (email.str.len_bytes() <= 254) & (email.str.find("@") <= 64)
    )


def _duplicates(rows: pl.DataFrame, valid: pl.Series) -> pl.DataFrame:
    """Row index and reason of every valid row that loses to another row with the same email
    (the most recently updated wins, then the lowest customer id)."""
    # Validity is a property of the email, so rows sharing a valid email are all valid. Candidates are
    # found on a 64-bit hash of the email (several times cheaper than on the strings), then checked on
    # the strings, so a collision cannot make two people one.
    candidates = (
        rows.select("email", "updated_at", "customer_id")
        .with_row_index("_row")
        .filter(valid & rows.get_column("email").hash().is_duplicated())
    )
    shared = candidates.filter(pl.col("email").is_duplicated())
    return (
        shared.sort(["email", "updated_at", "customer_id"], descending=[False, True, False], nulls_last=True)
        .with_columns(kept=pl.col("customer_id").first().over("email"))
        .filter(pl.col("customer_id") != pl.col("kept"))
        .select("_row", reason=pl.format("same email as customer {}, which was updated more recently", pl.col("kept")))
    )


def read_rows(connection: duckdb.DuckDBPyConnection, audience: Audience, source: Source) -> pl.DataFrame:
    try:
        return connection.sql(select_sql(audience, source)).pl()
    except duckdb.Error as exc:
        raise AudienceConfigError(
            f"audience {audience.key!r}: the customer 360 query failed: {str(exc).splitlines()[0]}; "
            "check the condition and field expressions in audiences.yaml"
        ) from None


def _mark(
    status: pl.Series, reason: pl.Series, rows: pl.Series, new_status: str, new_reason: pl.Series
) -> tuple[pl.Series, pl.Series]:
    """Set status and reason of the rows at the given indexes (only a few rows ever change)."""
    if rows.len() == 0:
        return status, reason
    return status.scatter(rows, new_status), reason.scatter(rows, new_reason)


def classify(rows: pl.DataFrame) -> pl.DataFrame:
    """Normalise and validate emails and de-duplicate: adds `email`, `status` and `reason`.

    Every row is looked at once (normalise, one regex, one hash for duplicates); the detailed
    reasons are worked out for the few rows that need one, and written in place.
    """
    rows = rows.with_columns(email=normalise_email(pl.col("email_raw")))
    valid = rows.select(email_is_valid(pl.col("email"))).to_series()
    status = pl.repeat("member", rows.height, dtype=pl.String, eager=True).alias("status")
    reason = pl.repeat(None, rows.height, dtype=pl.String, eager=True).alias("reason")
    invalid = (
        rows.select("email")
        .with_row_index("_row")
        .filter(~valid)
        .select(
            "_row",
            # Both tests agree by construction; the fallback keeps a row from ever losing its reason.
            reason=email_rejection(pl.col("email")).fill_null(pl.lit("invalid email")),
        )
    )
    status, reason = _mark(status, reason, invalid.get_column("_row"), "rejected", invalid.get_column("reason"))
    duplicates = _duplicates(rows, valid)
    status, reason = _mark(status, reason, duplicates.get_column("_row"), "duplicate", duplicates.get_column("reason"))
    return rows.with_columns(status, reason)


def member_emails(
    connection: duckdb.DuckDBPyConnection, audience: Audience, by_key: dict[str, Audience], source: Source
) -> pl.Series:
    """The emails an audience holds (to exclude it from another audience).

    Reads only the email column: which row wins a duplicate does not change the set of addresses.
    """
    emails = connection.sql(emails_sql(audience, source)).pl().select(email=normalise_email(pl.col("email_raw")))
    emails = emails.filter(email_is_valid(pl.col("email"))).unique()
    for excluded in excluded_emails(connection, audience, by_key, source).values():
        emails = emails.filter(~pl.col("email").is_in(excluded.implode()))
    return emails.get_column("email")


def excluded_emails(
    connection: duckdb.DuckDBPyConnection, audience: Audience, by_key: dict[str, Audience], source: Source
) -> dict[str, pl.Series]:
    """Reason -> normalised emails that must not be in the audience."""
    exclusions: dict[str, pl.Series] = {}
    for other in audience.exclude.audiences:
        exclusions[f"in audience {other}"] = member_emails(connection, by_key[other], by_key, source)
    if audience.exclude.suppression_table:
        table = audience.exclude.suppression_table
        emails = connection.sql(f"SELECT CAST(email AS VARCHAR) AS email FROM {table}").pl()
        exclusions[f"on suppression table {table}"] = emails.select(normalise_email(pl.col("email"))).get_column(
            "email"
        )
    if audience.exclude.emails:
        listed = pl.Series("email", audience.exclude.emails, dtype=pl.String)
        exclusions["listed in exclude.emails"] = (
            listed.to_frame().select(normalise_email(pl.col("email"))).get_column("email")
        )
    return exclusions


def compute_members(
    connection: duckdb.DuckDBPyConnection, audience: Audience, by_key: dict[str, Audience], source: Source
) -> pl.DataFrame:
    """Every selected row of the audience with its email, status (member/rejected/duplicate/excluded),
    reason, mapped fields and `fields_hash`."""
    rows = classify(read_rows(connection, audience, source))
    exclusions = [
        pl.DataFrame({"email": emails, "reason": f"excluded: {why}"}, schema={"email": pl.String, "reason": pl.String})
        for why, emails in excluded_emails(connection, audience, by_key, source).items()
    ]
    if exclusions:
        # One lookup for all exclusions; an address excluded for several reasons shows the first.
        excluded = pl.concat(exclusions).unique("email", keep="first", maintain_order=True)
        hits = (
            rows.select("email", "status")
            .with_row_index("_row")
            .filter(pl.col("status") == "member")
            .join(excluded, on="email", how="inner")
        )
        status, reason = _mark(
            rows.get_column("status"),
            rows.get_column("reason"),
            hits.get_column("_row"),
            "excluded",
            hits.get_column("reason"),
        )
        rows = rows.with_columns(status, reason)
    return rows
