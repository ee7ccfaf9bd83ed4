import pytest

from speechqa.errors import InputError
from speechqa.ingest import discover


def _touch(path, data=b"RIFF"):
    path.write_bytes(data)
    return path


def test_folder_without_manifest_uses_file_stems(tmp_path):
    _touch(tmp_path / "b.wav")
    _touch(tmp_path / "a.mp3")
    _touch(tmp_path / "notes.txt")
    recs, failures = discover(tmp_path)
    assert [r.call_id for r in recs] == ["a", "b"]
    assert failures == []


def test_folder_manifest_is_joined_and_unlisted_audio_kept(tmp_path):
    _touch(tmp_path / "x1.wav")
    _touch(tmp_path / "extra.wav")
    (tmp_path / "calls.csv").write_text(
        "\ufeffcall_id,file,agent_id,team\nC-1,x1.wav,A7,一组\n", encoding="utf-8")
    recs, failures = discover(tmp_path)
    assert [(r.call_id, r.path.name) for r in recs] == [("C-1", "x1.wav"), ("extra", "extra.wav")]
    assert recs[0].meta_dict == {"agent_id": "A7", "team": "一组"}
    assert failures == []


def test_manifest_csv_with_relative_paths_and_defaults(tmp_path):
    sub = tmp_path / "audio"
    sub.mkdir()
    _touch(sub / "k.wav")
    manifest = tmp_path / "night.csv"
    manifest.write_text("file,queue\naudio/k.wav,宽带\n", encoding="utf-8")
    recs, _ = discover(manifest)
    assert recs[0].call_id == "k"
    assert recs[0].path == sub / "k.wav"


def test_duplicate_ids_and_empty_rows_become_failures(tmp_path):
    manifest = tmp_path / "m.csv"
    manifest.write_text("call_id,file\nc1,a.wav\nc1,b.wav\nc2,\n", encoding="utf-8")
    recs, failures = discover(manifest)
    assert [r.call_id for r in recs] == ["c1"]
    assert {f.call_id for f in failures} == {"c1", "c2"}
    assert all(f.stage == "ingest" and "m.csv line" in f.reason for f in failures)


def test_manifest_without_file_column(tmp_path):
    manifest = tmp_path / "m.csv"
    manifest.write_text("call_id,path\nc1,a.wav\n", encoding="utf-8")
    with pytest.raises(InputError, match="needs a 'file' column"):
        discover(manifest)


def test_missing_input(tmp_path):
    with pytest.raises(InputError, match="no such folder or manifest"):
        discover(tmp_path / "nope")
