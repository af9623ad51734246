"""Submit notes in append-only files, one per process, in a folder beside the journal.

A submit is noted before its request is sent, answered (the provider's first snapshot, task id
and polling data included) as soon as the provider accepts it, and ended once that task's record
is in the journal (or at once when the request certainly never left). A note still open in the
file of a process that has died means one of two things:

- unanswered: the request may have been accepted and billed without its task id ever reaching
  the journal, so the client refuses to send it again blindly (`orphans`);
- answered: the provider accepted it but the journal's record died in the writer's queue (a kill
  right after the answer), so the task is adopted from the note (`adoptable`): resume follows it
  and a re-run of the request re-attaches to it, and the note is ended once it is recorded.

Why files and not a table in the journal: the note must be on disk before the request goes out,
and a journal table would make every submit wait for SQLite's write lock whenever another kernel
holds it. Appending a line to a file this process alone writes takes no lock; `fsync` makes the
note survive a crash of the machine, not only of the process. Ending a note is not fsync'd: an
end lost in a machine crash leaves a note open, which only makes the next run ask (`fresh=True`)
instead of resending, the safe side. Notes written at the same time share one `fsync` (a group
commit: a batch submits hundreds at once, and each fsync costs a disk flush); the client writes
them from worker threads, so a note never holds up its event loop.

Each line is JSON: ``{"token", "fingerprint", "provider", "model", "host", "pid", "process",
"started_at"}`` begins a note, ``{"answered": token, "task": {...}}`` answers it (fsync'd like the
beginning: the answer is what a hard kill must not lose), ``{"end": token}`` ends one. Only a dead
process's notes are ended by others (appending to its file); a file whose notes have all ended is
deleted by its owner when the journal closes, or by the first reader once its owner is dead.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

from ._models import Task
from ._processes import pid_alive

__all__ = ["FileNotes"]

#: This process, as the owner of its notes (a pid alone can be reused after a restart).
_PROCESS = uuid.uuid4().hex
_HOST = socket.gethostname()


def _ours(note: dict[str, Any]) -> bool:
    return note.get("process") == _PROCESS and note.get("pid") == os.getpid()


def _alive(note: dict[str, Any]) -> bool:
    """Whether the process that wrote a note may still be running."""
    if _ours(note):
        return True
    if note.get("host") != _HOST:
        return True  # another machine: we cannot tell, so assume it still works on it
    pid = int(note.get("pid", 0))
    if pid <= 0:
        return True  # no pid to ask: assume it still works on it
    return pid != os.getpid() and pid_alive(pid)  # our pid, another token: a reused pid


def _append(path: Path, records: list[dict[str, Any]], create: bool = True) -> None:
    """Append whole lines (not yet durable: see `FileNotes._sync`); `create=False` for another
    process's file (gone = nothing to end)."""
    data = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records).encode()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | (os.O_CREAT if create else 0), 0o644)
    except FileNotFoundError:
        if create:
            raise
        return
    try:
        os.write(fd, data)  # one write of whole lines: O_APPEND keeps writers from interleaving
    finally:
        os.close(fd)


def _read(path: Path) -> tuple[dict[str, Any] | None, dict[str, dict[str, Any]]]:
    """A notes file's owner (its first note, which names host, pid and process) and the notes
    no line has ended yet, by token."""
    owner: dict[str, Any] | None = None
    notes: dict[str, dict[str, Any]] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return owner, notes
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a line cut short by a crash of the machine: the note was never complete
        if "end" in record:
            notes.pop(record["end"], None)
        elif "answered" in record:
            if record["answered"] in notes:
                notes[record["answered"]] = {**notes[record["answered"]], "task": record["task"]}
        elif "token" in record:
            owner = owner or record
            notes[record["token"]] = record
    return owner, notes


def _owner(path: Path) -> dict[str, Any] | None:
    """Who wrote a notes file: its first note (one line read, however long the file)."""
    try:
        with path.open(encoding="utf-8") as handle:
            first = json.loads(handle.readline())
    except FileNotFoundError:
        return None
    except ValueError:
        return _read(path)[0]  # a first line cut short: the next complete note names it
    return first if "token" in first else _read(path)[0]


class FileNotes:
    """This process's submit notes for one journal, and the orphan check over everyone's."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._open: dict[str, str] = {}  # token -> fingerprint, for notes not yet ended
        self._answered: set[str] = set()  # those of them the provider has answered
        self._adopted: dict[str, Path] = {}  # dead processes' answered notes -> their file
        self._lock = threading.Lock()
        self._written = 0  # durable lines appended to our file so far
        self._synced = 0  # ... and how many of them an fsync has covered
        self._syncing = threading.Lock()  # one fsync at a time; the waiters' lines ride along

    @property
    def _mine(self) -> Path:
        """This process's file (named by the pid now: a forked child gets its own)."""
        return self.folder / f"{os.getpid()}-{_PROCESS}.jsonl"

    def begin(self, fp: str, provider: str, model: str) -> str:
        """Note a submit about to be sent; on disk (fsync'd) when this returns."""
        token = uuid.uuid4().hex
        note = {
            "token": token,
            "fingerprint": fp,
            "provider": provider,
            "model": model,
            "host": _HOST,
            "pid": os.getpid(),
            "process": _PROCESS,
            "started_at": datetime.now().astimezone().isoformat(),
        }
        with self._lock:
            new_folder = not self.folder.is_dir()
            self.folder.mkdir(parents=True, exist_ok=True)
            new_file = not self._mine.exists()
            written = self._append_mine(note)
            if new_folder or new_file:  # the file's name must survive a crash too
                _fsync_dir(self.folder)
                if new_folder:
                    _fsync_dir(self.folder.parent)
            self._open[token] = fp
        self._sync(written)
        return token

    def answered(self, token: str, task: Task) -> None:
        """The provider accepted the submit: its first snapshot, on disk (fsync'd) on return,
        so a kill before the journal records it loses no task (see the module docstring)."""
        line = {"answered": token, "task": task.model_dump(mode="json")}
        with self._lock:
            if token not in self._open or token in self._answered:
                return
            written = self._append_mine(line)
            self._answered.add(token)
        self._sync(written)

    def _append_mine(self, line: dict[str, Any]) -> int:
        """Append a line that must become durable to our file (the caller holds `_lock`); its
        number for `_sync`."""
        _append(self._mine, [line])
        self._written += 1
        return self._written

    def _sync(self, written: int) -> None:
        """Return once line number `written` of ours is on disk: one fsync covers every line
        appended before it, so notes begun together wait for one flush, not one each."""
        with self._syncing:
            if self._synced >= written:
                return  # another thread's fsync, started after our line was written, covered it
            with self._lock:
                target = self._written
            _fsync_file(self._mine)
            self._synced = target

    def end(self, token: str) -> None:
        """The submit's outcome is known and recorded: its note no longer counts (ours, or a
        dead process's answered note once this process has recorded its task)."""
        with self._lock:
            if self._open.pop(token, None) is not None:
                self._answered.discard(token)
                _append(self._mine, [{"end": token}])
            elif token in self._adopted:
                _append(self._adopted.pop(token), [{"end": token}], create=False)

    def _others(self) -> list[tuple[Path, dict[str, dict[str, Any]]]]:
        """Other processes' files whose owner has died, with their open notes; a dead owner's
        file with nothing left open is deleted on the way."""
        try:
            paths = sorted(self.folder.glob("*.jsonl"))
        except OSError:
            return []
        found = []
        for path in paths:
            if path == self._mine:
                continue
            owner = _owner(path)
            if owner is None or _alive(owner):
                continue  # a live process's notes are its own business: not read any further
            notes = _read(path)[1]
            if notes:
                found.append((path, notes))
            else:
                path.unlink(missing_ok=True)
        return found

    def orphans(self, fp: str) -> list[dict[str, Any]]:
        """Unanswered notes for this request left by processes that have died."""
        return [
            note
            for _, notes in self._others()
            for note in notes.values()
            if note["fingerprint"] == fp and "task" not in note
        ]

    def adoptable(self) -> list[tuple[str, Task]]:
        """Answered notes left by processes that have died, with the task each announced, not
        handed out before by this object; `end(token)` ends one once its task is recorded."""
        found = []
        for path, notes in self._others():
            for token, note in notes.items():
                if "task" not in note or token in self._adopted:
                    continue
                try:
                    task = Task.model_validate(note["task"])
                except ValueError:
                    continue  # written by another version: left for the user (fresh=True)
                with self._lock:
                    self._adopted[token] = path
                found.append((token, task))
        return found

    def forget(self, fp: str) -> None:
        """Drop this request's unanswered notes, ours and dead processes' (`fresh=True`: the
        user chose to submit it again; an answered one stays: its task is real and billed)."""
        with self._lock:
            mine = [
                token
                for token, noted in self._open.items()
                if noted == fp and token not in self._answered
            ]
            for token in mine:
                del self._open[token]
            if mine:
                _append(self._mine, [{"end": token} for token in mine])
        for path, notes in self._others():
            ended = [
                token
                for token, note in notes.items()
                if note["fingerprint"] == fp and "task" not in note
            ]
            if len(ended) == len(notes):
                path.unlink(missing_ok=True)
            elif ended:
                _append(path, [{"end": token} for token in ended], create=False)

    def close(self) -> None:
        """Delete this process's file if none of its notes is still open (an uncertain submit
        keeps its note: once this process is gone, the next run must not resend it blindly)."""
        with self._lock:
            if not self._open:
                self._mine.unlink(missing_ok=True)


def _fsync_file(path: Path) -> None:
    """Flush a file's written data to disk (whichever descriptor wrote it)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems cannot sync a directory; the file itself is synced
    finally:
        os.close(fd)
