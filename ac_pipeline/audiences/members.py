"""From customer 360 rows to the contacts of an audience.

DuckDB selects the audience's rows and mapped fields (it filters and projects fastest, next to the
data); Polars then does the row-level rules, all vectorised:

- Emails are normalised by trimming white space (including no-break and zero-width spaces, which
  copy-paste leaves behind) and lower-casing. Nothing more: dots and `+tags` in the local part name
  different mailboxes for ActiveCampaign, so folding them would merge different people.
- Emails are validated by the rules ActiveCampaign applies (see `_EMAIL` below); a row that fails keeps a
  specific reason (`status = rejected`), so it is never sent only to be refused.
- One contact per email. When several customer rows share an address the most recently updated row
  wins (it holds the freshest names and values), ties going to the lowest customer id so the choice is
  stable; the others are kept as `status = duplicate`, naming the winner.
- Exclusions (other audiences, a suppression table, listed emails) are applied after normalisation,
  so `  Foo@Example.com ` on a do-not-contact list excludes `foo@example.com`.

The result holds every selected row with its status; members are the rows with `status = member`.
Audience SQL runs only on a locked connection (external access off, configuration locked: see `sql.py`).
`fields_hash` fingerprints what is sent to ActiveCampaign (mapped fields and tags), so a change in
anything else about a customer never costs a request.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping

import duckdb
import polars as pl

from ac_pipeline.activecampaign.limits import MAX_EMAIL_LENGTH
from ac_pipeline.audiences.config import Audience, AudienceConfigError, Source, check_against_columns
from ac_pipeline.audiences.sql import UnsafeSql, is_refusal, lock, quote_identifier, quote_table

# White space people paste around addresses: everything Python's str.strip() removes, and the zero-width
# characters it does not.
_PADDING = (
    " \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f\x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
    "\u2009\u200a\u2028\u2029\u202f\u205f\u3000\u200b\u200c\u200d\u2060\ufeff"
)
# What ActiveCampaign accepts (after lower-casing): a local part of these characters (no apostrophe, no
# quotes), an '@', domain labels of letters, digits and inner hyphens, and a top-level domain of 2+
# letters; at most ActiveCampaign's email length (activecampaign.limits). `email_is_valid` is this pattern; `email_rejection` says which part
# of it an address breaks. The tests hold both to the sandbox's model of the real API.
_LOCAL_CHARS = "a-z0-9.!#$%&*+/=?^_`{|}~-"
_LABEL = r"[a-z0-9]([a-z0-9-]*[a-z0-9])?"
_TLD = r"[a-z]{2,}"
_VALID_EMAIL = rf"^[{_LOCAL_CHARS}]+@({_LABEL}\.)+{_TLD}$"

STANDARD_FIELDS = ("first_name", "last_name", "phone")


def field_column(title: str) -> str:
    """Column name of a custom field in the members table."""
    return f"field:{title}"


def _text(expression: str) -> str:
    # Newlines: a `-- comment` at the end of a snippet ends with its line (the parser check allows one).
    return f"CAST((\n{expression}\n) AS VARCHAR)"


def _alias(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _where(condition: str) -> str:
    return f"WHERE (\n{condition}\n)"


def select_sql(audience: Audience, source: Source) -> str:
    """The DuckDB query for one audience: its rows, every mapped value as text, and `fields_hash`.

    `fields_hash` fingerprints what is sent to ActiveCampaign (`fields_hash_sql`): md5 over the mapped
    values joined by a unit separator, and the audience's tags folded in so that changing them updates
    every contact. DuckDB computes it inside the scan, on
    every core, and md5 is the same in every version (Polars' own hash is not promised stable).
    The hash reads the text columns of an inner query, so that each value is cast to text once (at 10 M
    customers casting again inside the hash cost 5-15% of the select's CPU; README, Performance).
    """
    mapped = audience.fields.expressions()
    values = {name: mapped.get(name) for name in STANDARD_FIELDS}
    values |= {field_column(title): expression for title, expression in audience.fields.custom.items()}
    columns = [
        f"{quote_identifier(source.id_column)} AS customer_id",
        f"{quote_identifier(source.updated_column)} AS updated_at",
        f"{_text(audience.fields.email or 'NULL')} AS email_raw",
    ]
    # Column aliases come from custom field titles in the file: a '"' in a title is doubled, so it stays a name.
    columns += [f"{_text(expr) if expr else 'NULL::VARCHAR'} AS {_alias(name)}" for name, expr in values.items()]
    hashed = {name: _alias(name) if expr else None for name, expr in values.items()}
    tags = "'" + tags_text(audience.tags).replace("'", "''") + "'"
    rows = f"SELECT {', '.join(columns)} FROM {quote_table(source.table)} {_where(audience.condition)}"
    return f"SELECT *, {fields_hash_sql(hashed, tags)} AS fields_hash FROM (\n{rows}\n)"


def tags_text(tags: Iterable[str]) -> str:
    """The tags as `fields_hash` folds them in."""
    return json.dumps(sorted(tags))


def fields_hash_sql(values: Mapping[str, str | None], tags: str) -> str:
    """The SQL of `fields_hash` over text expressions of the standard fields then the custom fields (None for
    a standard field the audience does not map) and a text expression of the tags. The members' query and
    the read-back (readback/reader.py) both use it, so a value as ActiveCampaign holds it hashes the same
    as the value the audience sent. An empty value hashes as '' whether it was NULL or '': both are sent as
    ''. A field the audience does not map hashes as a NUL byte, which no sent value can be."""
    hashed = [f"coalesce({expr}, '')" if expr is not None else "chr(0)" for expr in values.values()]
    return f"md5(concat_ws(chr(31), {', '.join(hashed)}, {tags}))"


def emails_sql(audience: Audience, source: Source) -> str:
    """Only the emails of an audience's rows (for excluding it from another audience)."""
    email = _text(audience.fields.email or "NULL")
    return f"SELECT {email} AS email_raw FROM {quote_table(source.table)} {_where(audience.condition)}"


def normalise_email(column: pl.Expr) -> pl.Expr:
    return column.str.strip_chars(_PADDING).str.to_lowercase()


def email_rejection(email: pl.Expr) -> pl.Expr:
    """Why a normalised email cannot be sent to ActiveCampaign, or null when it can: the first rule of
    `_VALID_EMAIL` it breaks, in words."""
    local = email.str.extract(r"^([^@]*)@", 1)
    domain = email.str.extract(r"@([^@]*)$", 1)
    tld = domain.str.extract(r"\.([^.]*)$", 1)
    bad_local = local.str.extract(f"([^{_LOCAL_CHARS}])", 1)
    bad_domain = domain.str.extract(r"([^a-z0-9.-])", 1)
    return (
        pl.when(email.is_null() | (email == ""))
        .then(pl.lit("email missing"))
        .when(email.str.len_chars() > MAX_EMAIL_LENGTH)
        .then(pl.lit(f"email longer than {MAX_EMAIL_LENGTH} characters"))
        .when(email.str.contains(r"\s"))
        .then(pl.lit("email contains white space"))
        .when(email.str.count_matches("@") != 1)
        .then(pl.lit("email must contain exactly one '@'"))
        .when(~email.str.contains(r"^[\x00-\x7f]*$"))
        .then(pl.lit("email has non-ASCII characters"))
        .when(email.str.contains("'", literal=True))
        .then(pl.lit("apostrophe (') in the address: ActiveCampaign refuses it"))
        .when(local == "")
        .then(pl.lit("nothing before the '@'"))
        .when(bad_local.is_not_null())
        .then(pl.format("character '{}' before the '@': ActiveCampaign refuses it", bad_local))
        .when(domain == "")
        .then(pl.lit("nothing after the '@'"))
        .when(bad_domain.is_not_null())
        .then(pl.format("character '{}' in the domain: only letters, digits, '-' and '.' are allowed", bad_domain))
        .when(~domain.str.contains(".", literal=True))
        .then(pl.lit("the domain has no '.' (e.g. example.com)"))
        .when(domain.str.contains(r"(^|\.)(\.|$)"))
        .then(pl.lit("empty part in the domain (a leading, trailing or double '.')"))
        .when(domain.str.contains(r"(^|\.)-|-(\.|$)"))
        .then(pl.lit("a part of the domain starts or ends with '-'"))
        .when(~tld.str.contains(f"^{_TLD}$"))
        .then(pl.lit("top-level domain must be 2+ letters (the part after the last '.')"))
        .otherwise(pl.lit(None, dtype=pl.String))
    )


def email_is_valid(email: pl.Expr) -> pl.Expr:
    """The fast test: true exactly when `email_rejection` gives no reason."""
    return email.str.contains(_VALID_EMAIL).fill_null(False) & (email.str.len_chars() <= MAX_EMAIL_LENGTH)


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


def _query(
    connection: duckdb.DuckDBPyConnection, audience: Audience, source: Source, query: Callable[[], str]
) -> pl.DataFrame:
    """Lock the connection, then build and run one of the audience's queries; a failure names the setting."""
    lock(connection)
    try:
        return connection.sql(query()).pl()
    except (duckdb.Error, UnsafeSql) as exc:
        # Bind each snippet on its own to name the one at fault (this raises when it finds it).
        check_against_columns(audience, connection, source)
        refused = " (DuckDB refused to reach outside the customer 360)" if is_refusal(exc) else ""
        raise AudienceConfigError(
            f"audience {audience.key!r}: the customer 360 query failed{refused}: {str(exc).splitlines()[0]}; "
            "check the condition and field expressions in audiences.yaml"
        ) from None


def read_rows(connection: duckdb.DuckDBPyConnection, audience: Audience, source: Source) -> pl.DataFrame:
    return _query(connection, audience, source, lambda: select_sql(audience, source))


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
    emails = _query(connection, audience, source, lambda: emails_sql(audience, source))
    emails = emails.select(email=normalise_email(pl.col("email_raw")))
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
        emails = _query(
            connection, audience, source, lambda: f"SELECT CAST(email AS VARCHAR) AS email FROM {quote_table(table)}"
        )
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
    return apply_exclusions(rows, excluded_emails(connection, audience, by_key, source))


def apply_exclusions(rows: pl.DataFrame, exclusions: Mapping[str, pl.Series]) -> pl.DataFrame:
    """Mark the members of classified `rows` whose email is among the excluded ones (reason -> normalised
    emails, as `excluded_emails` gives them): status `excluded`, reason `excluded: <reason>`."""
    frames = [
        pl.DataFrame({"email": emails, "reason": f"excluded: {why}"}, schema={"email": pl.String, "reason": pl.String})
        for why, emails in exclusions.items()
    ]
    if not frames:
        return rows
    # One lookup for all exclusions; an address excluded for several reasons shows the first.
    excluded = pl.concat(frames).unique("email", keep="first", maintain_order=True)
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
    return rows.with_columns(status, reason)
