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


def test_one_run_per_output_folder_and_a_dead_runs_lock_is_taken_over(tmp_path):
    import json
    import socket

    import pytest

    from speechqa.errors import LockedError
    from speechqa.files import LOCK_NAME, run_lock

    with run_lock(tmp_path) as held:
        holder = json.loads(held.read_text(encoding="utf-8"))
        assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
        refused = rf"pid {os.getpid()} on {socket.gethostname()}, started 20"
        with pytest.raises(LockedError, match=refused), run_lock(tmp_path):
            pass
    assert not (tmp_path / LOCK_NAME).exists()  # released
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    (tmp_path / LOCK_NAME).write_text(json.dumps({"pid": int(dead.stdout), "host": socket.gethostname(),
                                                  "started_at": "2026-11-30T01:00:00+00:00"}), encoding="utf-8")
    with run_lock(tmp_path) as held:  # its process is gone: taken over
        assert json.loads(held.read_text(encoding="utf-8"))["pid"] == os.getpid()


def test_a_second_run_on_the_same_out_is_refused_naming_the_holder(tmp_path):
    from click.testing import CliRunner

    from speechqa.cli import main
    from speechqa.files import run_lock

    transcripts = tmp_path / "t.csv"
    transcripts.write_text("call_id,role,text\nc1,agent,您好\n", encoding="utf-8")
    with run_lock(tmp_path / "out"):
        result = CliRunner().invoke(main, ["run", "--transcripts", str(transcripts),
                                           "--out", str(tmp_path / "out")])
    assert result.exit_code != 0 and f"pid {os.getpid()}" in result.output
    assert not (tmp_path / "out" / "calls.csv").exists()
