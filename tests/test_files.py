"""Output files: written atomically, with the permissions a shared QA folder expects."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

from speechqa import asr
from speechqa.files import write_atomic, write_text_atomic
from tests.conftest import transcript


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_outputs_honour_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        write_text_atomic(tmp_path / "a.csv", "x")
        os.umask(0o027)
        write_atomic(tmp_path / "b.csv", lambda p: p.write_text("y", encoding="utf-8"))
    finally:
        os.umask(old)
    assert _mode(tmp_path / "a.csv") == 0o644 and _mode(tmp_path / "b.csv") == 0o640
    assert not list(tmp_path.glob(".*.tmp"))  # no temp file left behind


def test_the_transcript_cache_is_private(tmp_path):
    old = os.umask(0o022)
    try:
        asr.save_cached(tmp_path / "cache", "ab" + "0" * 62, transcript([]))
    finally:
        os.umask(old)
    assert _mode(tmp_path / "cache") == 0o700
    (cached,) = (tmp_path / "cache").rglob("*.json")
    assert _mode(cached) == 0o600


def test_every_command_group_answers_when_run_as_a_module():
    for group in ("rules", "models", "review", "clips"):
        done = subprocess.run([sys.executable, "-m", "speechqa.cli", group, "--help"],
                              capture_output=True, text=True, check=False)
        assert done.returncode == 0 and "Usage:" in done.stdout, (group, done.stderr)
