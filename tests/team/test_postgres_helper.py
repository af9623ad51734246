"""genwidgets._postgres: the team backend's URL handling, connection and schema versions, against
the real loopback PostgreSQL (tests/conftest.py `postgres`)."""

from __future__ import annotations

import socket
import uuid
from pathlib import Path
from typing import Any

import pytest

from genwidgets import ConfigError
from genwidgets._postgres import (
    Link,
    Unreachable,
    connect,
    ensure_schema,
    is_postgres_url,
    lost,
    redacted,
    schema_version,
    scrub,
    validate,
)

SECRET = "s3cr%2Ft-pw"  # percent-encoded in the URL: "s3cr/t-pw" is what the server gets


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://ann:pw@db.example:5432/lab", "postgresql://ann@db.example:5432/lab"),
        ("postgres://ann@db.example/lab", "postgres://ann@db.example/lab"),
        ("postgresql://db.example/lab", "postgresql://db.example/lab"),
        (
            "postgresql://ann:p%40ss@h1:5432,h2:5433/lab?sslmode=require&password=x",
            "postgresql://ann@h1:5432,h2:5433/lab?sslmode=require",
        ),
        ("postgresql://ann:pw@[::1]:5432/lab", "postgresql://ann@[::1]:5432/lab"),
    ],
)
def test_redacted_drops_the_password_and_only_it(url: str, shown: str) -> None:
    assert redacted(url) == shown


def test_postgres_urls_are_told_from_paths() -> None:
    assert is_postgres_url("postgresql://h/db") and is_postgres_url("POSTGRES://h/db")
    assert not is_postgres_url("journal.sqlite")
    assert not is_postgres_url("sqlite:///x.db")
    assert not is_postgres_url(Path("postgresql:/x"))


def test_scrub_removes_the_password_in_every_spelling() -> None:
    url = f"postgresql://ann:{SECRET}@h/db"
    text = f"failed: {url} / s3cr/t-pw / s3cr%2Ft-pw / host=h password='a b' password=zz"
    cleaned = scrub(text, url)
    assert "s3cr" not in cleaned and "'a b'" not in cleaned and "zz" not in cleaned
    assert "postgresql://ann@h/db" in cleaned


def test_validate_refuses_what_is_not_a_database_url() -> None:
    with pytest.raises(ConfigError, match="Not a PostgreSQL URL"):
        validate("mysql://ann:hunter2@h/db")
    with pytest.raises(ConfigError, match="names no database") as caught:
        validate("postgresql://ann:hunter2@h")
    assert "hunter2" not in str(caught.value)
    with pytest.raises(ConfigError, match="Invalid PostgreSQL URL") as caught:
        validate("postgresql://ann:hunter2@h/db?nosuchoption=1")
    assert "hunter2" not in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_connect_takes_the_password_from_the_url(postgres: Any) -> None:
    with connect(postgres.url) as conn:
        assert conn.execute("select current_user").fetchone() == (postgres.user,)


def test_connect_takes_the_password_from_pgpassword(
    postgres: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PGPASSWORD", postgres.password)
    with connect(postgres.url_without_password) as conn:
        assert conn.execute("select 1").fetchone() == (1,)


def test_connect_takes_the_password_from_a_pgpass_file(
    postgres: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("PGPASSWORD", raising=False)
    passfile = tmp_path / "pgpass"
    passfile.write_text(f"{postgres.host}:{postgres.port}:*:{postgres.user}:{postgres.password}\n")
    passfile.chmod(0o600)
    monkeypatch.setenv("PGPASSFILE", str(passfile))
    with connect(postgres.url_without_password) as conn:
        assert conn.execute("select 1").fetchone() == (1,)


def test_a_refused_password_is_a_config_error_without_it(
    postgres: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PGPASSWORD", raising=False)
    monkeypatch.setenv("PGPASSFILE", "/nonexistent")
    wrong = postgres.url.replace(postgres.password, "wrong-" + postgres.password)
    with pytest.raises(ConfigError) as caught:
        connect(wrong)
    message = str(caught.value)
    assert "password authentication failed" in message
    assert postgres.url_without_password in message
    assert postgres.password not in message and "wrong-" not in message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_an_unreachable_server_is_a_config_error_naming_the_url_without_password() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there once the socket closes
    url = f"postgresql://ann:hunter2@127.0.0.1:{port}/lab"
    with pytest.raises(ConfigError, match="Cannot connect to PostgreSQL") as caught:
        connect(url, connect_timeout=2)
    assert f"postgresql://ann@127.0.0.1:{port}/lab" in str(caught.value)
    assert "hunter2" not in str(caught.value) and "hunter2" not in repr(caught.value)


def test_the_schema_is_created_on_first_use_then_migrated_step_by_step(postgres: Any) -> None:
    component = f"test-{uuid.uuid4().hex[:8]}"
    table = component.replace("-", "_")
    with connect(postgres.url) as conn:
        assert schema_version(conn, component) is None
        v1 = [f"CREATE TABLE {table} (a int)"]
        assert ensure_schema(conn, component, v1) == 1
        assert ensure_schema(conn, component, v1) == 1  # nothing to do the second time
        assert schema_version(conn, component) == 1
        calls: list[int] = []

        def add_column(c: Any) -> None:
            calls.append(1)
            c.execute(f"ALTER TABLE {table} ADD COLUMN b text")

        assert ensure_schema(conn, component, [*v1, add_column]) == 2
        assert ensure_schema(conn, component, [*v1, add_column]) == 2
        assert calls == [1]
        conn.execute(f"INSERT INTO {table} (a, b) VALUES (1, 'x')")
        with pytest.raises(ConfigError, match="version 2, newer than this genwidgets knows"):
            ensure_schema(conn, component, v1)
        assert schema_version(conn, component) == 2  # refused, never downgraded


def test_a_failed_migration_leaves_the_version_as_it_was(postgres: Any) -> None:
    component = f"test-{uuid.uuid4().hex[:8]}"
    table = component.replace("-", "_")
    with connect(postgres.url) as conn:
        ensure_schema(conn, component, [f"CREATE TABLE {table} (a int)"])
        with pytest.raises(Exception, match="nosuchtable"):
            steps = [f"CREATE TABLE {table} (a int)", "DROP TABLE nosuchtable"]
            ensure_schema(conn, component, steps)
        assert schema_version(conn, component) == 1


def test_a_link_reconnects_once_the_server_is_back(postgres: Any) -> None:
    link = Link(postgres.url, connect_timeout=2)
    assert link(lambda conn: conn.execute("select 1").fetchone()) == (1,)
    postgres.stop()
    try:
        with pytest.raises(Unreachable, match="Cannot connect to PostgreSQL") as caught:
            link(lambda conn: conn.execute("select 2").fetchone())
        assert postgres.url_without_password in str(caught.value)
        assert postgres.password not in str(caught.value)
        assert lost(caught.value)
    finally:
        postgres.start()
    assert link(lambda conn: conn.execute("select 3").fetchone()) == (3,)  # a new connection
    assert postgres.password not in repr(link)
    link.close()
    assert not lost(ValueError("not an outage"))
