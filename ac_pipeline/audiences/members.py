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
_LOCAL_PART = r"^[a-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*$"
_DOMAIN = r"^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]([a-z0-9-]{0,61}[a-z0-9])$"

STANDARD_FIELDS = ("first_name", "last_name", "phone")


def field_column(title: str) -> str:
    """Column name of a custom field in the members table."""
    return f"field:{title}"


def select_sql(audience: Audience, source: Source) -> str:
    """The DuckDB query for one audience: its rows and every mapped value, as text."""
    columns = [
        f"{source.id_column} AS customer_id",
        f"{source.updated_column} AS updated_at",
        f"CAST(({audience.fields.email}) AS VARCHAR) AS email_raw",
    ]
    mapped = audience.fields.expressions()
    for name in STANDARD_FIELDS:
        expression = mapped.get(name)
        columns.append(f"CAST(({expression}) AS VARCHAR) AS {name}" if expression else f"NULL::VARCHAR AS {name}")
    for title, expression in audience.fields.custom.items():
        columns.append(f'CAST(({expression}) AS VARCHAR) AS "{field_column(title)}"')
    return f"SELECT {', '.join(columns)} FROM {source.table} WHERE ({audience.condition})"


def normalise_email(column: pl.Expr) -> pl.Expr:
    return column.str.strip_chars(_PADDING).str.to_lowercase()


def email_rejection(email: pl.Expr) -> pl.Expr:
    """Why a normalised email cannot be sent to ActiveCampaign, or null when it can."""
    local = email.str.extract(r"^([^@]*)@", 1)
    domain = email.str.extract(r"@([^@]*)$", 1)
    return (
        pl.when(email.is_null() | (email == "")).then(pl.lit("email missing"))
        .when(email.str.len_chars() > 254).then(pl.lit("email longer than 254 characters"))
        .when(email.str.contains(r"\s")).then(pl.lit("email contains white space"))
        .when(email.str.count_matches("@") != 1).then(pl.lit("email must contain exactly one '@'"))
        .when(~email.str.contains(r"^[\x00-\x7f]*$")).then(pl.lit("email has non-ASCII characters"))
        .when(~local.str.contains(_LOCAL_PART) | (local.str.len_chars() > 64)).then(pl.lit("invalid local part (before '@')"))
        .when(~domain.str.contains(_DOMAIN)).then(pl.lit("invalid domain (after '@')"))
        .otherwise(pl.lit(None, dtype=pl.String))
    )


def fields_hash(frame: pl.DataFrame, audience: Audience) -> pl.Series:
    """A stable fingerprint of what is sent for each contact: mapped fields and the audience's tags.

    md5 over a unit-separator-joined string (computed by DuckDB, vectorised and the same in every
    version, unlike Polars' internal hash). Tags are folded in so that changing an audience's tags
    updates its contacts.
    """
    value_columns = [*STANDARD_FIELDS, *(field_column(t) for t in audience.fields.custom)]
    tags = json.dumps(sorted(audience.tags))
    # NULL and '' must differ, so NULL becomes a byte that cannot appear in text fields from the table.
    parts = ", ".join(f"coalesce(\"{c}\", chr(0))" for c in value_columns)
    with duckdb.connect() as connection:
        connection.register("frame", frame.select(value_columns))
        hashed = connection.sql(f"SELECT md5(concat_ws(chr(31), {parts}, $tags)) AS fields_hash FROM frame",
                                params={"tags": tags}).pl()
    return hashed.get_column("fields_hash")


def _deduplicate(valid: pl.DataFrame) -> pl.DataFrame:
    """Mark all but one row per email as duplicates (newest update wins, then lowest customer id)."""
    shared = valid.filter(pl.col("email").is_duplicated())
    if shared.is_empty():
        return valid
    winners = (
        shared.sort(["updated_at", "customer_id"], descending=[True, False], nulls_last=True)
        .unique(subset="email", keep="first", maintain_order=True)
        .select("email", pl.col("customer_id").alias("kept_customer_id"))
    )
    return (
        valid.join(winners, on="email", how="left")
        .with_columns(
            pl.when(pl.col("kept_customer_id").is_not_null() & (pl.col("customer_id") != pl.col("kept_customer_id")))
            .then(pl.lit("duplicate"))
            .otherwise(pl.col("status"))
            .alias("status"),
        )
        .with_columns(
            pl.when(pl.col("status") == "duplicate")
            .then(pl.format("same email as customer {}, which was updated more recently", pl.col("kept_customer_id")))
            .otherwise(pl.col("reason"))
            .alias("reason")
        )
        .drop("kept_customer_id")
    )


def read_rows(connection: duckdb.DuckDBPyConnection, audience: Audience, source: Source) -> pl.DataFrame:
    try:
        return connection.sql(select_sql(audience, source)).pl()
    except duckdb.Error as exc:
        raise AudienceConfigError(
            f"audience {audience.key!r}: the customer 360 query failed: {str(exc).splitlines()[0]}; "
            "check the condition and field expressions in audiences.yaml"
        ) from None


def classify(rows: pl.DataFrame) -> pl.DataFrame:
    """Normalise and validate emails and de-duplicate: adds `email`, `status` and `reason`."""
    rows = rows.with_columns(normalise_email(pl.col("email_raw")).alias("email"))
    rows = rows.with_columns(email_rejection(pl.col("email")).alias("reason"))
    rows = rows.with_columns(
        pl.when(pl.col("reason").is_null()).then(pl.lit("member")).otherwise(pl.lit("rejected")).alias("status")
    )
    valid, rejected = rows.filter(pl.col("status") == "member"), rows.filter(pl.col("status") == "rejected")
    return pl.concat([_deduplicate(valid), rejected], how="vertical")


def member_emails(connection: duckdb.DuckDBPyConnection, audience: Audience, by_key: dict[str, Audience],
                  source: Source) -> pl.Series:
    """The emails an audience holds (used to exclude one audience from another)."""
    members = compute_members(connection, audience, by_key, source)
    return members.filter(pl.col("status") == "member").get_column("email")


def excluded_emails(connection: duckdb.DuckDBPyConnection, audience: Audience, by_key: dict[str, Audience],
                    source: Source) -> dict[str, pl.Series]:
    """Reason -> normalised emails that must not be in the audience."""
    exclusions: dict[str, pl.Series] = {}
    for other in audience.exclude.audiences:
        exclusions[f"in audience {other}"] = member_emails(connection, by_key[other], by_key, source)
    if audience.exclude.suppression_table:
        table = audience.exclude.suppression_table
        emails = connection.sql(f"SELECT CAST(email AS VARCHAR) AS email FROM {table}").pl()
        exclusions[f"on suppression table {table}"] = emails.select(normalise_email(pl.col("email"))).get_column("email")
    if audience.exclude.emails:
        listed = pl.Series("email", audience.exclude.emails, dtype=pl.String)
        exclusions["listed in exclude.emails"] = listed.to_frame().select(normalise_email(pl.col("email"))).get_column("email")
    return exclusions


def compute_members(connection: duckdb.DuckDBPyConnection, audience: Audience, by_key: dict[str, Audience],
                    source: Source) -> pl.DataFrame:
    """Every selected row of the audience with its email, status (member/rejected/duplicate/excluded),
    reason, mapped fields and `fields_hash` (members only)."""
    rows = classify(read_rows(connection, audience, source))
    for reason, emails in excluded_emails(connection, audience, by_key, source).items():
        hit = (pl.col("status") == "member") & pl.col("email").is_in(emails.drop_nulls().implode())
        rows = rows.with_columns(
            pl.when(hit).then(pl.lit("excluded")).otherwise(pl.col("status")).alias("status"),
            pl.when(hit).then(pl.lit(f"excluded: {reason}")).otherwise(pl.col("reason")).alias("reason"),
        )
    members = rows.filter(pl.col("status") == "member")
    others = rows.filter(pl.col("status") != "member")
    members = members.with_columns(fields_hash(members, audience))
    others = others.with_columns(pl.lit(None, dtype=pl.String).alias("fields_hash"))
    return pl.concat([members, others], how="vertical")
