# Two entry points: `make run` (install + the default Self-Instruct run on the embedded teacher)
# and `make test` (install with test deps + the whole test suite). Everything lands in ./.venv.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install run test bench clean

$(BIN)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "datagen needs Python >= 3.11 (set PYTHON=python3.11)")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip setuptools wheel
	# llama-cpp-python builds from source the first time (6-14 min on 2 cores); pip caches the wheel
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

install: $(BIN)/.installed

run: install
	$(BIN)/datagen run self-instruct --seeds seeds/175.jsonl

test: install
	$(BIN)/python -m pytest -ra

bench: install
	$(BIN)/python bench/rouge_novelty.py --quick
	$(BIN)/python bench/minhash.py --quick
	$(BIN)/python bench/teacher_throughput.py --quick
	$(BIN)/python bench/stream_memory.py --quick

clean:
	rm -rf $(VENV) .pytest_cache
