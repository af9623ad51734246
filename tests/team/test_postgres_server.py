"""The loopback PostgreSQL the team tests run against: real, password-protected, restartable."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest


def test_the_server_takes_its_password_and_only_it(postgres: Any) -> None:
    with psycopg.connect(postgres.url) as conn:
        assert conn.execute("select 1").fetchone() == (1,)
    wrong = postgres.url.replace(postgres.password, "wrong")
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(wrong)
    assert postgres.password not in repr(postgres)


def test_the_server_can_go_away_and_come_back(postgres: Any) -> None:
    postgres.stop()
    try:
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(postgres.url, connect_timeout=2)
    finally:
        postgres.start()
    with psycopg.connect(postgres.url) as conn:
        assert conn.execute("select 2").fetchone() == (2,)
