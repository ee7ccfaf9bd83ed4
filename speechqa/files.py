"""Atomic file writes: every file speechqa produces goes through here.

A writer fills a temp file in the target's folder, which is flushed to disk and renamed over
the target, so a reader (or a run killed with -9) never sees a half-written file.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _umask() -> int:
    mask = os.umask(0o022)  # the only way to read it is to set it; put it straight back
    os.umask(mask)
    return mask


def write_atomic(path: Path, write: Callable[[Path], Any], mode: int = 0o666) -> None:
    """Call ``write(tmp_path)``, fsync the result, then rename it to ``path``. The file gets
    ``mode`` less the umask, as ``open`` would give it (mkstemp's 0600 would shut the rest of
    a QA team's share out of the night's tables)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        os.chmod(tmp, mode & ~_umask())
        write(Path(tmp))
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(path: Path, text: str, mode: int = 0o666) -> None:
    write_atomic(path, lambda p: p.write_text(text, encoding="utf-8"), mode)


def private_dir(path: Path) -> Path:
    """``path`` as a folder only its owner can enter (0700), made if missing: the transcript
    cache holds what was said, numbers unmasked."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path
