# cnnlab: `make demo` (set up, train and evaluate on the offline digits) and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DEMO_RUN ?= runs/demo-digits

.PHONY: demo test lint format benchmark clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	rm -rf $(DEMO_RUN)
	$(BIN)/cnnlab train --data digits --model small-cnn --epochs 15 --out $(DEMO_RUN)
	$(BIN)/cnnlab evaluate $(DEMO_RUN)
	@echo
	@echo "Results are in $(DEMO_RUN)/: config.json dataset.json model.json metrics.jsonl"
	@echo "checkpoints/ and eval/ (test.json, test-confusion.png, test-predictions.csv)."
	@echo "Try: $(BIN)/cnnlab predict $(DEMO_RUN) IMAGE.png"

test: $(STAMP)
	$(BIN)/ruff check cnnlab tests benchmarks
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check cnnlab tests benchmarks
	$(BIN)/ruff format --check cnnlab tests benchmarks

format: $(STAMP)
	$(BIN)/ruff format cnnlab tests benchmarks
	$(BIN)/ruff check --fix cnnlab tests benchmarks

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
