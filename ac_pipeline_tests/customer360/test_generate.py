"""The sample customer 360: deterministic for a seed, and dirty in the ways the pipeline must survive."""

from __future__ import annotations

import duckdb

from ac_pipeline.cli import main
from ac_pipeline.customer360.generate import apply_sample_changes, generate


def _rows(path):
    with duckdb.connect(str(path), read_only=True) as connection:
        return connection.sql("SELECT * FROM customers ORDER BY customer_id").fetchall()


def test_the_same_seed_gives_the_same_table(tmp_path) -> None:
    a = generate(tmp_path / "a.duckdb", customers=2_000, seed=3)
    b = generate(tmp_path / "b.duckdb", customers=2_000, seed=3)
    c = generate(tmp_path / "c.duckdb", customers=2_000, seed=4)
    assert _rows(a) == _rows(b)
    assert _rows(a) != _rows(c)


def test_the_table_is_dirty_on_purpose(sample_360) -> None:
    with duckdb.connect(str(sample_360), read_only=True) as connection:
        one = lambda sql: connection.sql(sql).fetchall()[0][0]  # noqa: E731
        assert one("SELECT count(*) FROM customers") == 20_000
        assert one("SELECT count(DISTINCT customer_id) FROM customers") == 20_000
        assert one("SELECT count(*) FROM customers WHERE email IS NULL") > 0
        assert one("SELECT count(*) FROM customers WHERE email <> trim(email)") > 0
        assert one("SELECT count(*) FROM customers WHERE email <> lower(email)") > 0
        assert one("SELECT count(*) FROM customers WHERE email NOT LIKE '%_@_%._%'") > 0
        assert (
            one("""SELECT count(*) FROM (SELECT lower(trim(email)) e FROM customers WHERE email IS NOT NULL
                      GROUP BY e HAVING count(*) > 1)""")
            > 0
        )
        assert one("SELECT count(*) FROM customers WHERE first_name IS NULL") > 0
        assert one("SELECT count(*) FROM customers WHERE phone IS NULL") > 0
        assert one("SELECT count(*) FROM customers WHERE first_name <> strip_accents(first_name)") > 0
        assert one("SELECT count(*) FROM suppressed_emails") > 0
        columns = {row[0] for row in connection.sql("DESCRIBE customers").fetchall()}
    assert {
        "customer_id",
        "email",
        "first_name",
        "last_name",
        "phone",
        "country",
        "city",
        "signup_date",
        "lifetime_value",
        "order_count",
        "last_order_date",
        "loyalty_tier",
        "email_consent",
    } <= columns


def test_sample_changes_touch_a_few_rows(tmp_path) -> None:
    path = generate(tmp_path / "c.duckdb", customers=5_000, seed=1)
    touched = apply_sample_changes(path, seed=2)
    assert 0 < sum(touched.values()) < 5_000 * 0.1


def test_the_generate_command(tmp_path, capsys) -> None:
    out = tmp_path / "x.duckdb"
    assert main(["generate", "--customers", "500", "--seed", "1", "--output", str(out)]) == 0
    assert "500 customers" in capsys.readouterr().out
    assert len(_rows(out)) == 500
    assert not (tmp_path / "x.duckdb.partial").exists()
