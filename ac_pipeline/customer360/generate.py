"""A sample customer 360: one row per customer, with the dirt real customer tables have.

The whole table is produced by one DuckDB statement over `range(n)`. Every random choice is a hash of
(customer id, column, seed), so the output is deterministic for a seed (and a DuckDB version: its
`hash` is not promised stable across releases) and the work is spread over every core: 10 M customers
take about a minute on two cores, not an hour of Python loops.

Dirt on purpose, because the pipeline must survive it:
- emails in mixed case and padded with spaces, some with invalid syntax, some missing (NULL);
- the same address on two customer rows (households, duplicate sign-ups), written differently;
- NULL names and phones, names with accents and non-Latin scripts;
- a `suppressed_emails` table (do-not-contact list) in the same database.
"""

from __future__ import annotations

import os
from pathlib import Path

import duckdb

# The day the sample data describes; fixed so that a seed always gives the same table.
AS_OF = "2026-11-01"

FIRST_NAMES = [
    "Olivia",
    "Liam",
    "Emma",
    "Noah",
    "Ava",
    "Oliver",
    "Sophia",
    "Elijah",
    "Mia",
    "James",
    "Amelia",
    "Lucas",
    "Harper",
    "Mason",
    "Evelyn",
    "Ethan",
    "Chloé",
    "Mateo",
    "Zoë",
    "Léa",
    "José",
    "Björn",
    "Łukasz",
    "Søren",
    "Anaïs",
    "Renée",
    "Dvořák",
    "Ingrid",
    "Yuki",
    "Hana",
    "Mohammed",
    "Fatima",
    "Aarav",
    "Priya",
    "Wei",
    "Mei",
    "Chen",
    "Sakura",
    "Jürgen",
    "Ana",
    "Олег",
    "Мария",
    "李",
    "さくら",
    "Giulia",
    "Matteo",
    "Sofía",
    "Nicolás",
    "Camille",
    "Hugo",
]
LAST_NAMES = [
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Martinez",
    "Lopez",
    "Wilson",
    "Anderson",
    "Thomas",
    "Taylor",
    "Moore",
    "Martin",
    "Lee",
    "Thompson",
    "White",
    "Harris",
    "Müller",
    "Schmidt",
    "Schröder",
    "Dubois",
    "Lefèvre",
    "Núñez",
    "Peña",
    "Kowalski",
    "Nowak",
    "Østergaard",
    "O'Brien",
    "MacDonald",
    "Tanaka",
    "Suzuki",
    "Kim",
    "Park",
    "Nguyen",
    "Singh",
    "Patel",
    "Rossi",
    "Bianchi",
    "Иванов",
    "王",
    "García-Márquez",
    "van der Berg",
]
EMAIL_DOMAINS = [
    "gmail.com",
    "yahoo.com",
    "outlook.com",
    "hotmail.com",
    "icloud.com",
    "proton.me",
    "example.org",
    "shop.co.uk",
    "web.de",
    "orange.fr",
]

# country, share of customers, cities, language
COUNTRIES = [
    ("US", 0.40, ["New York", "Los Angeles", "Chicago", "Houston", "Seattle", "Austin"], "en"),
    ("CA", 0.15, ["Toronto", "Montréal", "Vancouver", "Calgary", "Ottawa"], "en"),
    ("GB", 0.12, ["London", "Manchester", "Birmingham", "Edinburgh", "Bristol"], "en"),
    ("DE", 0.10, ["Berlin", "München", "Hamburg", "Köln", "Frankfurt"], "de"),
    ("FR", 0.08, ["Paris", "Lyon", "Marseille", "Toulouse", "Nice"], "fr"),
    ("AU", 0.05, ["Sydney", "Melbourne", "Brisbane", "Perth"], "en"),
    ("ES", 0.04, ["Madrid", "Barcelona", "Sevilla", "València"], "es"),
    ("JP", 0.03, ["東京", "Osaka", "Kyoto"], "ja"),
    ("BR", 0.03, ["São Paulo", "Rio de Janeiro", "Brasília"], "pt"),
]


def _sql_list(values: list[str]) -> str:
    return "[" + ", ".join("'" + v.replace("'", "''") + "'" for v in values) + "]"


def _country_case(expr: str, pick: str) -> str:
    """CASE over cumulative shares: `pick` says which attribute of the country to return."""
    parts, cumulative = [], 0.0
    for code, share, cities, language in COUNTRIES:
        cumulative += share
        value = {
            "code": f"'{code}'",
            "language": f"'{language}'",
            "city": f"{_sql_list(cities)}[1 + (h(customer_id, 11) % {len(cities)})::INT]",
        }[pick]
        parts.append(f"WHEN {expr} < {cumulative:.4f} THEN {value}")
    return "CASE " + " ".join(parts) + " ELSE 'US' END" if pick == "code" else "CASE " + " ".join(parts) + " END"


def customers_sql(customers: int, seed: int) -> str:
    """The statement that builds the `customers` table (exposed so a benchmark can time it)."""
    first, last, domains = _sql_list(FIRST_NAMES), _sql_list(LAST_NAMES), _sql_list(EMAIL_DOMAINS)
    n_first, n_last, n_domains = len(FIRST_NAMES), len(LAST_NAMES), len(EMAIL_DOMAINS)
    return f"""
    CREATE OR REPLACE MACRO h(i, k) AS hash(i, k, {int(seed)});
    CREATE OR REPLACE MACRO u(i, k) AS (hash(i, k, {int(seed)}) % 1000000)::DOUBLE / 1000000;
    CREATE OR REPLACE MACRO email_of(i) AS
        -- Names without a Latin transliteration (Олег, 李) give 'customer' before the '@', as shops do.
        coalesce(nullif(regexp_replace(lower(strip_accents({first}[1 + (h(i, 1) % {n_first})::INT])), '[^a-z]', '', 'g'), ''), 'customer')
        || '.' || coalesce(nullif(regexp_replace(lower(strip_accents({last}[1 + (h(i, 2) % {n_last})::INT])), '[^a-z]', '', 'g'), ''), 'x')
        || i::VARCHAR || '@' || {domains}[1 + (h(i, 3) % {n_domains})::INT];
    CREATE OR REPLACE TABLE customers AS
    WITH base AS (
        SELECT
            i AS customer_id,
            -- 1% share an address with a nearby earlier customer (a household, a second sign-up).
            CASE WHEN u(i, 20) < 0.01 AND i > 1 THEN greatest(1, i - 1 - (h(i, 21) % 50)::BIGINT) ELSE i END AS email_owner,
            u(i, 10) AS country_draw,
            DATE '2015-01-01' + (u(i, 30) * 4000)::INT AS signup_date,
            -- Order counts are long-tailed: most people buy once or twice, a few buy a lot.
            floor(-ln(1 - u(i, 40) * 0.999) * 2.5)::INT AS order_count,
            10 + u(i, 41) * 190 AS average_order
        FROM range(1, {int(customers)} + 1) AS t(i)
    ),
    shaped AS (
        SELECT
            customer_id,
            email_of(email_owner) AS clean_email,
            u(customer_id, 22) AS email_draw,
            {_country_case("country_draw", "code")} AS country,
            {_country_case("country_draw", "city")} AS city,
            {_country_case("country_draw", "language")} AS preferred_language,
            least(signup_date, DATE '{AS_OF}') AS signup_date,
            order_count,
            round(order_count * average_order, 2)::DECIMAL(12, 2) AS lifetime_value
        FROM base
    )
    SELECT
        customer_id,
        CASE
            WHEN email_draw < 0.010 THEN NULL
            WHEN email_draw < 0.012 THEN replace(clean_email, '@', ' at ')
            WHEN email_draw < 0.014 THEN replace(clean_email, '.', '')
            WHEN email_draw < 0.015 THEN replace(clean_email, '@', '@@')
            WHEN email_draw < 0.016 THEN 'n/a'
            WHEN email_draw < 0.017 THEN 'jürgen.' || clean_email
            WHEN email_draw < 0.040 THEN upper(clean_email)
            WHEN email_draw < 0.070 THEN upper(clean_email[1]) || clean_email[2:]
            WHEN email_draw < 0.100 THEN '  ' || clean_email || ' '
            ELSE clean_email
        END AS email,
        CASE WHEN u(customer_id, 50) < 0.02 THEN NULL
             ELSE {first}[1 + (h(customer_id, 1) % {n_first})::INT] END AS first_name,
        CASE WHEN u(customer_id, 51) < 0.02 THEN NULL
             ELSE {last}[1 + (h(customer_id, 2) % {n_last})::INT] END AS last_name,
        CASE WHEN u(customer_id, 52) < 0.15 THEN NULL
             WHEN u(customer_id, 53) < 0.5 THEN '+1 555 ' || lpad((h(customer_id, 54) % 10000000)::VARCHAR, 7, '0')
             ELSE '(555) ' || lpad((h(customer_id, 54) % 1000)::VARCHAR, 3, '0') || '-' || lpad((h(customer_id, 55) % 10000)::VARCHAR, 4, '0')
        END AS phone,
        country,
        city,
        preferred_language,
        signup_date,
        lifetime_value,
        order_count,
        CASE WHEN order_count = 0 THEN NULL
             ELSE signup_date + (u(customer_id, 60) * (DATE '{AS_OF}' - signup_date))::INT END AS last_order_date,
        CASE WHEN lifetime_value >= 2000 THEN 'platinum'
             WHEN lifetime_value >= 800 THEN 'gold'
             WHEN lifetime_value >= 250 THEN 'silver'
             ELSE 'bronze' END AS loyalty_tier,
        CASE WHEN u(customer_id, 70) < 0.03 THEN NULL ELSE u(customer_id, 71) < 0.72 END AS email_consent,
        u(customer_id, 71) < 0.40 AS newsletter_opt_in,
        (TIMESTAMP '{AS_OF}' - INTERVAL 1 DAY * (h(customer_id, 80) % 365)::INT) AS updated_at
    FROM shaped
    ORDER BY customer_id;

    -- The do-not-contact list: addresses written the way people typed them into a complaint form.
    CREATE OR REPLACE TABLE suppressed_emails AS
    SELECT DISTINCT '  ' || upper(trim(email)) || ' ' AS email, 'complaint' AS reason
    FROM customers
    WHERE email IS NOT NULL AND u(customer_id, 90) < 0.002;
    DROP MACRO email_of; DROP MACRO u; DROP MACRO h;
    """


def generate(path: Path, customers: int = 100_000, seed: int = 42) -> Path:
    """Write a sample customer 360 to `path`, replacing it only once the new one is complete."""
    if customers < 1:
        raise ValueError(f"--customers must be at least 1, got {customers}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.unlink(missing_ok=True)
    with duckdb.connect(str(partial)) as connection:
        connection.execute(customers_sql(customers, seed))
        connection.execute("CHECKPOINT")
    os.replace(partial, path)  # a reader never sees a half-written database
    return path


def apply_sample_changes(path: Path, seed: int = 1, share: float = 0.02) -> dict[str, int]:
    """Change the sample data a little, the way a day of business would.

    Some customers buy again (value, orders and tier go up), some withdraw consent, some correct their
    name; used by the demo to show an incremental sync. Returns how many rows each change touched.
    """
    touched: dict[str, int] = {}
    statements = {
        "bought_again": f"""
            UPDATE customers SET order_count = order_count + 1,
                   lifetime_value = lifetime_value + 900,
                   last_order_date = DATE '{AS_OF}',
                   loyalty_tier = CASE WHEN lifetime_value + 900 >= 2000 THEN 'platinum'
                                       WHEN lifetime_value + 900 >= 800 THEN 'gold' ELSE 'silver' END,
                   updated_at = TIMESTAMP '{AS_OF}' + INTERVAL 1 DAY
            WHERE (hash(customer_id, 'buy', {seed}) % 10000) < {int(share * 10000)}""",
        "withdrew_consent": f"""
            UPDATE customers SET email_consent = false, newsletter_opt_in = false
            WHERE email_consent AND (hash(customer_id, 'consent', {seed}) % 10000) < {int(share * 5000)}""",
        "renamed": f"""
            UPDATE customers SET last_name = last_name || '-Smith'
            WHERE last_name IS NOT NULL AND (hash(customer_id, 'name', {seed}) % 10000) < {int(share * 2500)}""",
    }
    with duckdb.connect(str(path)) as connection:
        for name, statement in statements.items():
            touched[name] = connection.execute(statement).fetchall()[0][0]
    return touched
