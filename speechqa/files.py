"""Atomic file writes: every file speechqa produces goes through here.

A writer fills a temp file in the target's folder, which is flushed to disk and renamed over
the target, so a reader (or a run killed with -9) never sees a half-written file.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import os
import secrets
import socket
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


def _temp_beside(path: Path, mode: int) -> Path:
    """A new, empty temp file in ``path``'s folder, made with ``mode``: the kernel takes the
    umask off, as for any file ``open`` makes (mkstemp's fixed 0600 would shut the rest of a QA
    team's share out of the night's tables; reading the umask means setting it, which races
    with the worker threads' own writes)."""
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
        try:
            os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, mode))
        except FileExistsError:
            continue
        return tmp
    raise FileExistsError(f"{path.parent}: no free temp file name for {path.name}")


_STAGED: contextvars.ContextVar[list[tuple[Path, Path]] | None] = contextvars.ContextVar("staged", default=None)


def write_atomic(path: Path, write: Callable[[Path], Any], mode: int = 0o666) -> None:
    """Call ``write(tmp_path)``, fsync the result, then rename it to ``path``. The file gets
    ``mode`` less the umask, as ``open`` would give it. Inside :func:`all_or_nothing` the rename
    waits for the others. A write that fails (a full disk) raises OutputError naming the file,
    and leaves the file it would have replaced as it was."""
    with staged(path, mode) as tmp:
        write(tmp)


@contextlib.contextmanager
def staged(path: Path, mode: int = 0o666) -> Iterator[Path]:
    """:func:`write_atomic` for a writer that fills its file over time (the night's tables,
    appended part by part): the body writes the temp path it is given; on leaving, the file
    is flushed and renamed to ``path`` (or staged, inside :func:`all_or_nothing`); on an error
    it is removed and the old ``path`` stays as it was."""
    from speechqa.errors import OutputError

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        tmp = _temp_beside(path, mode)
    except OSError as exc:
        raise OutputError(f"{path}: cannot be written ({exc.strerror or exc}); the files there "
                          "are left as they were") from exc
    try:
        yield tmp
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        pending = _STAGED.get()
        if pending is None:
            os.replace(tmp, path)
        else:
            pending.append((tmp, path))
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise OutputError(f"{path}: cannot be written ({exc.strerror or exc}); the files there "
                              "are left as they were") from exc
        raise


@contextlib.contextmanager
def all_or_nothing() -> Iterator[None]:
    """Every :func:`write_atomic` (and :func:`staged`) inside goes to its temp file, and all are
    renamed into place together at the end, in the order written: a failure on any of them (a
    full disk half way through the night's tables) leaves every earlier file as it was, not a
    mix of two runs."""
    pending: list[tuple[Path, Path]] = []
    token = _STAGED.set(pending)
    try:
        yield
    except BaseException:
        for tmp, _ in pending:
            Path(tmp).unlink(missing_ok=True)
        raise
    finally:
        _STAGED.reset(token)
    for tmp, path in pending:
        os.replace(tmp, path)


def write_text_atomic(path: Path, text: str, mode: int = 0o666) -> None:
    write_atomic(path, lambda p: p.write_text(text, encoding="utf-8"), mode)


def private_dir(path: Path) -> Path:
    """``path`` as a folder only its owner can enter (0700), made if missing: the transcript
    cache holds what was said, numbers unmasked."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


LOCK_NAME = ".speechqa.lock"
KILL_AT = "SPEECHQA_TEST_KILL_AT"  # fault injection for the kill -9 tests: a stage name


def checkpoint(stage: str) -> None:
    """Where a run may be killed: with ``$SPEECHQA_TEST_KILL_AT`` set to ``stage`` the process
    kills itself here with SIGKILL, as a power cut or the OOM killer would. The kill -9 tests
    use it to stop a real run at each stage; it does nothing otherwise."""
    if os.environ.get(KILL_AT) == stage:
        import signal

        os.kill(os.getpid(), signal.SIGKILL)


def sweep_temp_files(folder: Path) -> int:
    """Remove the temp files a killed run left in ``folder`` (``.NAME.*.tmp`` from
    :func:`write_atomic`); only under the run lock, when no other writer can be at work.
    Returns how many went."""
    gone = 0
    for tmp in Path(folder).glob(".*.tmp"):
        tmp.unlink(missing_ok=True)
        gone += 1
    return gone


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    return True


@contextlib.contextmanager
def run_lock(folder: Path) -> Iterator[Path]:
    """Hold ``folder/.speechqa.lock`` for a run: one run per output folder at a time.

    The lock file names its holder (pid, host, start time) and is made with O_EXCL, so two
    runs cannot both take it. A second run is refused with LockedError naming the holder; a
    lock left by a process that died on this host is taken over. Released when the run ends,
    however it ends (a kill -9 leaves it, for the next run to take over)."""
    from speechqa.errors import LockedError

    folder = Path(folder)
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    me = {"pid": os.getpid(), "host": socket.gethostname(),
          "started_at": datetime.now(UTC).isoformat(timespec="seconds")}
    for _ in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                holder = json.loads(path.read_text(encoding="utf-8"))
                pid, host = int(holder["pid"]), str(holder["host"])
            except (OSError, ValueError, KeyError, TypeError):
                holder, pid, host = {}, -1, ""
            if not holder or (host == me["host"] and not process_alive(pid)):
                path.unlink(missing_ok=True)  # stale: its process is gone (or it is unreadable)
                continue
            raise LockedError(f"{folder}: another run is writing here (pid {pid} on {host}, started "
                              f"{holder.get('started_at', '?')}); wait for it, or use another --out") from None
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(me, fh)
        break
    else:
        raise LockedError(f"{folder}: cannot take the run lock {path}")
    sweep_temp_files(folder)  # a killed run's half-written files: nobody else writes here now
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)
        if created and not any(folder.iterdir()):
            folder.rmdir()  # a run that stopped before writing anything leaves no empty OUT
