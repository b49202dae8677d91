"""Audience definitions: what each audience is, which ActiveCampaign list it feeds, which fields it sends.

`audiences.yaml` is read and checked here. Two levels of checks:
- `load_audiences` checks everything that needs no data: structure, unique keys, an email mapping,
  SQL that parses, exclusions that name real audiences (and no cycles). Definitions load calls it, so a
  broken file shows up as a load error in the Dagster UI, naming the audience and the fix.
- `check_against_columns` checks the SQL against the customer 360's columns (unknown columns, type
  errors); the members asset calls it before reading anything.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import duckdb
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

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


class FieldMapping(_Strict):
    """Which customer 360 column (or SQL expression over it) fills each ActiveCampaign contact field."""

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

    def expressions(self) -> dict[str, str]:
        """Output column name -> SQL expression, for the standard fields that are mapped."""
        standard = {"first_name": self.first_name, "last_name": self.last_name, "phone": self.phone}
        return {name: expr for name, expr in standard.items() if expr}


class Exclusions(_Strict):
    audiences: list[str] = Field(default_factory=list)
    # A table in the customer 360 database with an `email` column (a do-not-contact list).
    suppression_table: str | None = None
    emails: list[str] = Field(default_factory=list)


class RemovalGuard(_Strict):
    """Stop a sync that would remove an unusual part of the list, until a person confirms."""

    max_share: float = Field(default=0.20, ge=0, le=1)
    max_count: int | None = Field(default=None, ge=0)
    # Below this many synced members, shares swing too much to mean anything.
    min_list_size: int = Field(default=20, ge=0)


class Audience(_Strict):
    key: str
    description: str = ""
    list: ListTarget
    condition: str = Field(min_length=1)
    exclude: Exclusions = Field(default_factory=Exclusions)
    fields: FieldMapping
    tags: list[str] = Field(default_factory=list)
    removal_guard: RemovalGuard = Field(default_factory=RemovalGuard)
    # Imported contacts start automations unless excluded; most list syncs must not trigger them.
    exclude_automations: bool = True

    @field_validator("key")
    @classmethod
    def _key_is_a_partition_key(cls, key: str) -> str:
        if not KEY_PATTERN.match(key):
            raise ValueError(
                f"key {key!r} must be lower-case letters, digits, '_' or '-' (at most 63), e.g. 'vip_customers'"
            )
        return key

    @model_validator(mode="after")
    def _email_is_mapped(self) -> Audience:
        if not self.fields.email:
            raise ValueError("fields.email is required: name the customer 360 column that holds the email address")
        return self


class Source(_Strict):
    """Where the customer rows are, and the columns that identify and date them."""

    table: str = "customers"
    id_column: str = "customer_id"
    # When a row last changed: among rows sharing an email, the most recent one wins.
    updated_column: str = "updated_at"


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


def _parse_error_location(error: dict[str, Any], raw: dict[str, Any]) -> str:
    loc = error["loc"]
    if len(loc) >= 2 and loc[0] == "audiences" and isinstance(loc[1], int):
        entries = raw.get("audiences") or []
        entry = entries[loc[1]] if loc[1] < len(entries) else {}
        key = entry.get("key") if isinstance(entry, dict) else None
        where = ".".join(str(part) for part in loc[2:]) or "(the entry)"
        return f"audience {key!r} (entry {loc[1] + 1}), {where}" if key else f"audience entry {loc[1] + 1}, {where}"
    return ".".join(str(part) for part in loc) or "(top level)"


def _check_sql_parses(audience: Audience) -> None:
    """Each SQL snippet must parse as a single expression: no statements smuggled in with ';'."""
    snippets = {"condition": audience.condition, "fields.email": audience.fields.email}
    snippets |= {f"fields.{name}": expr for name, expr in audience.fields.expressions().items()}
    snippets |= {f"fields.custom[{title!r}]": expr for title, expr in audience.fields.custom.items()}
    parser = duckdb.connect()
    try:
        for where, snippet in snippets.items():
            if ";" in snippet:
                raise AudienceConfigError(
                    f"audience {audience.key!r}, {where}: ';' is not allowed; write one SQL expression, not statements"
                )
            try:
                statements = parser.extract_statements(
                    f"SELECT {snippet} FROM (SELECT 1) AS t"
                    if where != "condition"
                    else f"SELECT 1 FROM (SELECT 1) AS t WHERE {snippet}"
                )
            except duckdb.ParserException as exc:
                raise AudienceConfigError(
                    f"audience {audience.key!r}, {where}: the SQL does not parse ({_first_line(exc)}); "
                    f"fix the expression {snippet!r}"
                ) from None
            if len(statements) != 1:
                raise AudienceConfigError(f"audience {audience.key!r}, {where}: write one SQL expression")
    finally:
        parser.close()


def _check_exclusions(audiences: list[Audience]) -> None:
    by_key = {a.key: a for a in audiences}
    for audience in audiences:
        for other in audience.exclude.audiences:
            if other not in by_key:
                raise AudienceConfigError(
                    f"audience {audience.key!r}, exclude.audiences: {other!r} names no audience; "
                    f"known keys: {', '.join(sorted(by_key))}"
                )
            if other == audience.key:
                raise AudienceConfigError(
                    f"audience {audience.key!r} excludes itself; remove {other!r} from exclude.audiences"
                )
    # Exclusions are followed recursively, so they must not loop.
    for start in audiences:
        stack, seen = [(start.key, [start.key])], set()
        while stack:
            key, path = stack.pop()
            for nxt in by_key[key].exclude.audiences:
                if nxt == start.key:
                    raise AudienceConfigError(
                        f"audience {start.key!r}: exclusions form a cycle ({' -> '.join(path + [nxt])}); break it"
                    )
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, path + [nxt]))


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0]


def parse_audiences(text: str, source: str = "audiences.yaml") -> AudienceFile:
    """Parse and check audience definitions given as YAML text."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise AudienceConfigError(f"{source} is not valid YAML: {exc}") from None
    if not isinstance(raw, dict) or "audiences" not in raw:
        raise AudienceConfigError(f"{source}: expected a top-level 'audiences:' list")
    if not isinstance(raw["audiences"], list) or not raw["audiences"]:
        raise AudienceConfigError(f"{source}: 'audiences' must be a non-empty list of audience definitions")
    keys = [entry.get("key") for entry in raw["audiences"] if isinstance(entry, dict)]
    duplicates = sorted({k for k in keys if k is not None and keys.count(k) > 1})
    if duplicates:
        raise AudienceConfigError(
            f"{source}: duplicate audience key(s) {', '.join(map(repr, duplicates))}; each key names one partition, "
            "so give every audience its own key"
        )
    try:
        parsed = AudienceFile.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{_parse_error_location(e, raw)}: {e['msg']}" for e in exc.errors())
        raise AudienceConfigError(f"{source}: {problems}") from None
    for audience in parsed.audiences:
        _check_sql_parses(audience)
    _check_exclusions(parsed.audiences)
    return parsed


def load_audiences(path: Path) -> AudienceFile:
    """Read and check audiences.yaml."""
    path = Path(path)
    if not path.exists():
        raise AudienceConfigError(
            f"no audience definitions at {path}; create it (the repository ships data/audiences.yaml as an example) "
            "or point AC_PIPELINE_AUDIENCES at your file"
        )
    return parse_audiences(path.read_text(encoding="utf-8"), source=str(path))


def check_against_columns(audience: Audience, connection: duckdb.DuckDBPyConnection, table: str = "customers") -> None:
    """Bind every SQL snippet of the audience against the customer 360 without reading a row.

    Raises AudienceConfigError naming the audience, the setting and the column DuckDB could not find.
    """
    snippets = {"condition": audience.condition, "fields.email": audience.fields.email}
    snippets |= {f"fields.{name}": expr for name, expr in audience.fields.expressions().items()}
    snippets |= {f"fields.custom[{title!r}]": expr for title, expr in audience.fields.custom.items()}
    for where, snippet in snippets.items():
        query = (
            f"SELECT 1 FROM {table} WHERE ({snippet}) LIMIT 0"
            if where == "condition"
            else f"SELECT ({snippet}) FROM {table} LIMIT 0"
        )
        try:
            connection.sql(query).fetchall()
        except duckdb.Error as exc:
            message = _first_line(exc)
            missing = re.search(r'Referenced column "?([^"\s]+)"? not found', message)
            if missing:
                columns = [row[0] for row in connection.sql(f"DESCRIBE {table}").fetchall()]
                raise AudienceConfigError(
                    f"audience {audience.key!r}, {where}: unknown column {missing.group(1)!r} in the customer 360 "
                    f"table {table!r}; available columns: {', '.join(columns)}"
                ) from None
            raise AudienceConfigError(
                f"audience {audience.key!r}, {where}: DuckDB rejects {snippet!r}: {message}"
            ) from None
    if audience.exclude.suppression_table:
        name = audience.exclude.suppression_table
        try:
            connection.sql(f"SELECT email FROM {name} LIMIT 0").fetchall()
        except duckdb.Error as exc:
            raise AudienceConfigError(
                f"audience {audience.key!r}, exclude.suppression_table: cannot read an 'email' column from {name!r} "
                f"({_first_line(exc)}); create the table in the customer 360 or remove the setting"
            ) from None
