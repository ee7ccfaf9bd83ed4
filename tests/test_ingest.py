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
    found = discover(tmp_path)
    recs, failures = found.recordings, found.failures
    assert [r.call_id for r in recs] == ["a", "b"]
    assert failures == []


def test_folder_manifest_is_joined_and_unlisted_audio_kept(tmp_path):
    _touch(tmp_path / "x1.wav")
    _touch(tmp_path / "extra.wav")
    (tmp_path / "calls.csv").write_text(
        "\ufeffcall_id,file,agent_id,team\nC-1,x1.wav,A7,一组\n", encoding="utf-8")
    found = discover(tmp_path)
    recs, failures = found.recordings, found.failures
    assert [(r.call_id, r.path.name) for r in recs] == [("C-1", "x1.wav"), ("extra", "extra.wav")]
    assert recs[0].meta_dict == {"agent_id": "A7", "team": "一组"}
    assert failures == []


def test_manifest_csv_with_relative_paths_and_defaults(tmp_path):
    sub = tmp_path / "audio"
    sub.mkdir()
    _touch(sub / "k.wav")
    manifest = tmp_path / "night.csv"
    manifest.write_text("file,queue\naudio/k.wav,宽带\n", encoding="utf-8")
    recs = discover(manifest).recordings
    assert recs[0].call_id == "k"
    assert recs[0].path == sub / "k.wav"


def test_duplicate_ids_and_empty_rows_become_failures(tmp_path):
    manifest = tmp_path / "m.csv"
    manifest.write_text("call_id,file\nc1,a.wav\nc1,b.wav\nc2,\n", encoding="utf-8")
    found = discover(manifest)
    recs, failures = found.recordings, found.failures
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


@pytest.mark.parametrize(("encoding", "recorded"), [
    ("utf-8", "utf-8"), ("utf-8-sig", "utf-8-sig"), ("gbk", "gbk"), ("gb18030", "gb18030")])
def test_a_manifest_saved_as_gbk_or_gb18030_is_read_and_its_encoding_kept(tmp_path, encoding, recorded):
    _touch(tmp_path / "c1.wav")
    team = "投诉组" if encoding != "gb18030" else "投诉组𠀀"  # 𠀀 is outside GBK: GB18030 only
    (tmp_path / "calls.csv").write_bytes(f"call_id,file,team\nc1,c1.wav,{team}\n".encode(encoding))
    found = discover(tmp_path)
    assert found.recordings[0].meta_dict == {"team": team} and found.encoding == recorded
    assert found.manifest == tmp_path / "calls.csv"


def test_bytes_that_are_no_text_name_the_manifest(tmp_path):
    (tmp_path / "calls.csv").write_bytes(b"call_id,file\n\xff\xfe\x00\x81\x00,\x80\n")
    with pytest.raises(InputError, match=r"calls.csv: not UTF-8 or GBK text"):
        discover(tmp_path)


def test_recordings_are_found_at_any_depth_and_colliding_stems_take_their_path(tmp_path):
    for rel in ("queue1/c01.wav", "queue2/c01.wav", "queue2/hour9/c02.mp3", "top.wav", ".cache/x.wav"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        _touch(tmp_path / rel)
    found = discover(tmp_path)
    assert [r.call_id for r in found.recordings] == ["queue1-c01", "queue2-c01", "c02", "top"]
    assert found.failures == [] and found.manifest is None


def test_manifest_rows_that_leave_the_folder_are_refused_unless_allowed(tmp_path):
    root = tmp_path / "night"
    root.mkdir()
    _touch(tmp_path / "secret.wav")
    _touch(root / "ok.wav")
    (root / "link.wav").symlink_to(tmp_path / "secret.wav")
    (root / "calls.csv").write_text(
        f"call_id,file\na,ok.wav\nb,../secret.wav\nc,link.wav\nd,{tmp_path / 'secret.wav'}\n", encoding="utf-8")
    found = discover(root / "calls.csv")
    assert [r.call_id for r in found.recordings] == ["a"]
    assert {f.call_id for f in found.failures} == {"b", "c", "d"}
    assert all("leads outside" in f.reason and "allow_outside" in f.reason for f in found.failures)
    allowed = discover(root / "calls.csv", allow_outside=True)
    assert [r.call_id for r in allowed.recordings] == ["a", "b", "c", "d"]
