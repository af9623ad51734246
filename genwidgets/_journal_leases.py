"""Submit notes in PostgreSQL: leases with a heartbeat, for senders on several machines.

The rules are `_journal_notes`' (read its docstring): a submit is noted before its request is
sent, answered with the provider's first snapshot as soon as it is accepted, and ended once the
task's record is in the journal; a note left open by a sender that died is either unanswered
(`orphans`: the request may have been accepted and billed, so the client raises
`SubmitUncertain` rather than resend it) or answered (`adoptable`: the task is followed and
recorded by whoever finds it). What changes is how "the sender died" is known: a pid means
nothing on another machine, so each note is a lease (row ``journal_submits``) that its holder's
heartbeat thread keeps extending; a lease that expired, by the server's clock, is a dead
sender's. On the holder's own machine (same host, boot and pid namespace) a dead pid says so at
once, as with the files, instead of after the lease.

Adopting an answered note takes its lease over (a row update that only one process wins), so
a task is adopted once across the team, and if the adopter dies too the lease expires again.
A note's end is a delete; one that cannot reach the server is kept and retried by the heartbeat
(an end lost with its process only makes the next run ask first, the safe side). An answer
that cannot reach the server is logged, not raised: the provider accepted the task and its record
is still queued for the journal's writer, which retries until the server is back.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import uuid
from pathlib import Path
from typing import Any

from ._journal_notes import _alive
from ._journal_postgres import jsonb
from ._models import Task
from ._postgres import DatabaseURL, Link, lost, redacted, scrub

__all__ = ["LEASE_SECONDS", "PostgresNotes"]

log = logging.getLogger("genwidgets.journal")

#: How long a note outlives its holder's last heartbeat (the heartbeat runs 3 times per lease).
LEASE_SECONDS = 30.0
_PROCESS = uuid.uuid4().hex
_HOST = socket.gethostname()


def _machine() -> str:
    """This host's boot and pid namespace: two notes with the same value come from processes
    whose pids this process can check (same kernel, same boot, same pid numbering)."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return f"unknown-{_PROCESS}"  # never equal to another process's: leases only
    return f"{_HOST}/{boot}/{namespace}"


_MACHINE = _machine()
_COLUMNS = "token, fingerprint, provider, model, host, machine, pid, process, started_at"
_EXPIRED = "expires_at < now()"


class PostgresNotes:
    """This process's submit notes as leases in one journal database, and the check over
    everyone's (see the module docstring)."""

    def __init__(self, url: str, *, lease_seconds: float = LEASE_SECONDS) -> None:
        self.url = DatabaseURL(url)
        self.lease = lease_seconds
        self._link = Link(url)
        self.process, self.machine = _PROCESS, _MACHINE  # who holds this object's leases
        self._mine: dict[str, str] = {}  # open notes this process holds: token -> fingerprint
        self._answered: set[str] = set()
        self._unended: set[str] = set()  # ends the server has not taken yet
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"<PostgresNotes {redacted(self.url)}>"

    @property
    def _holder(self) -> dict[str, Any]:
        return {"host": _HOST, "machine": self.machine, "pid": os.getpid(), "process": self.process}

    def _hold(self, token: str, fp: str) -> None:
        with self._lock:
            self._mine[token] = fp
            if self._beat is None or not self._beat.is_alive():
                self._stop.clear()
                self._beat = threading.Thread(
                    target=self._heartbeat, name=f"lease {redacted(self.url)}", daemon=True
                )
                self._beat.start()

    def begin(self, fp: str, provider: str, model: str) -> str:
        """Note a submit about to be sent: committed (a lease this process holds) on return."""
        token = uuid.uuid4().hex
        row = {"token": token, "fp": fp, "provider": provider, "model": model, **self._holder}
        self._link(
            lambda conn: conn.execute(
                "INSERT INTO journal_submits (token, fingerprint, provider, model, host, "
                "machine, pid, process, expires_at) VALUES (%(token)s, %(fp)s, %(provider)s, "
                "%(model)s, %(host)s, %(machine)s, %(pid)s, %(process)s, "
                "now() + make_interval(secs => %(lease)s))",
                {**row, "lease": self.lease},
            )
        )
        self._hold(token, fp)
        return token

    def answered(self, token: str, task: Task) -> None:
        """The provider accepted the submit: its first snapshot joins the note (committed on
        return; logged, not raised, when it cannot be: see the module docstring)."""
        with self._lock:
            if token not in self._mine or token in self._answered:
                return
        snapshot = jsonb(task.model_dump(mode="json", fallback=str))
        try:
            self._link(
                lambda conn: conn.execute(
                    "UPDATE journal_submits SET task = %s::jsonb WHERE token = %s",
                    (snapshot, token),
                )
            )
        except Exception as exc:  # never raised: the provider took the task, its record waits
            log.warning(
                "journal: the answer to a submit could not be noted (%s)", scrub(str(exc), self.url)
            )
            return
        with self._lock:
            self._answered.add(token)

    def end(self, token: str) -> None:
        """The outcome is recorded: the note goes (ours, or one adopted from a dead sender)."""
        with self._lock:
            self._mine.pop(token, None)
            self._answered.discard(token)
            self._unended.add(token)
        self._flush_ends()

    def _flush_ends(self) -> None:
        with self._lock:
            tokens = sorted(self._unended)
        if not tokens:
            return
        try:
            self._link(
                lambda conn: conn.execute(
                    "DELETE FROM journal_submits WHERE token = ANY(%s)", (tokens,)
                )
            )
        except Exception as exc:
            if not lost(exc):
                raise
            return  # kept: the heartbeat tries again
        with self._lock:
            self._unended.difference_update(tokens)

    def _dead(self, where: str, args: dict[str, Any]) -> list[dict[str, Any]]:
        """Other processes' open notes matching `where` whose holder is dead: lease expired, or
        on this machine with its pid gone."""
        query = (  # live leases on other machines stay on the server: the common case
            f"SELECT {_COLUMNS}, {_EXPIRED} AS expired, task FROM journal_submits "
            f"WHERE process <> %(process)s AND ({_EXPIRED} OR machine = %(machine)s) "
            f"AND ({where})"
        )
        rows = self._link(lambda conn: conn.execute(query, {**args, **self._holder}).fetchall())
        names = [*_COLUMNS.split(", "), "expired", "task"]
        notes = [dict(zip(names, row, strict=True)) for row in rows]
        return [
            {**note, "started_at": note["started_at"].isoformat()}
            for note in notes
            if note.pop("expired") or (note["machine"] == self.machine and not _alive(note))
        ]

    def orphans(self, fp: str) -> list[dict[str, Any]]:
        """Unanswered notes for this request whose senders are dead."""
        found = self._dead("fingerprint = %(fp)s AND task IS NULL", {"fp": fp})
        return [{k: v for k, v in note.items() if k != "task"} for note in found]

    def adoptable(self) -> list[tuple[str, Task]]:
        """Answered notes of dead senders: each one's lease taken over by this process (one
        process wins it), with the task it announced; `end(token)` once it is recorded."""
        found = []
        for note in self._dead("task IS NOT NULL", {}):
            try:
                task = Task.model_validate(note["task"])
            except ValueError:
                continue  # written by another version: left for the user (fresh=True)
            taken = self._link(
                lambda conn, note=note: conn.execute(
                    "UPDATE journal_submits SET host = %(host)s, machine = %(machine)s, "
                    "pid = %(pid)s, process = %(process)s, "
                    "expires_at = now() + make_interval(secs => %(lease)s) "
                    "WHERE token = %(token)s AND process = %(was)s",
                    {**self._holder, "lease": self.lease, "token": note["token"],
                     "was": note["process"]},
                ).rowcount
            )  # fmt: skip
            if taken:
                self._hold(note["token"], note["fingerprint"])
                with self._lock:
                    self._answered.add(note["token"])
                found.append((note["token"], task))
        return found

    def forget(self, fp: str) -> None:
        """Drop this request's unanswered notes, ours and dead senders' (`fresh=True`)."""
        with self._lock:
            mine = [t for t, f in self._mine.items() if f == fp and t not in self._answered]
        for token in mine:
            self.end(token)
        dead = [note["token"] for note in self.orphans(fp)]
        if dead:
            self._link(
                lambda conn: conn.execute(
                    "DELETE FROM journal_submits WHERE token = ANY(%s) AND task IS NULL", (dead,)
                )
            )

    def _heartbeat(self) -> None:
        """Extend this process's leases a third of a lease apart, and retry unsent ends; a
        heartbeat missed while the server is away is made up when it is back."""
        while not self._stop.wait(self.lease / 3):
            with self._lock:
                held = bool(self._mine)
            try:
                self._flush_ends()
                if held:
                    self._link(
                        lambda conn: conn.execute(
                            "UPDATE journal_submits SET expires_at = now() + "
                            "make_interval(secs => %s) WHERE process = %s",
                            (self.lease, self.process),
                        )
                    )
            except Exception as exc:  # the thread must outlive any outage
                log.debug("journal: lease heartbeat failed (%s)", type(exc).__name__)

    def close(self) -> None:
        """Stop the heartbeat. Open notes (uncertain submits) stay: their leases expire and the
        next run asks before resending, as with a dead process's notes file."""
        self._stop.set()
        if self._beat is not None:
            self._beat.join(5)
        with contextlib.suppress(Exception):
            self._flush_ends()
        self._link.close()
