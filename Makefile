# Two entry points: `make run` (install + the default Self-Instruct run on the embedded teacher)
# and `make test` (install with test deps + the whole test suite). Everything lands in ./.venv.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

# The embedded teacher's llama.cpp is built from source, portably: never -march=native (a native build on
# a CPU that advertises AMX compiled tile kernels that died with SIGILL on another machine of the same
# kind). x86-64 needs AVX2/FMA/F16C/BMI2 (any x86-64 CPU since 2015); aarch64 uses the baseline ISA.
# Only the shared libraries the server loads are built: no multimodal (mtmd) library, tests, tools or
# examples.
LLAMA_CPP_VERSION := 0.3.36
ARCH := $(shell uname -m)
LLAMA_ISA_x86_64 := -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON \
	-DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF
LLAMA_ISA_aarch64 :=
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF $(LLAMA_ISA_$(ARCH)) -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF \
	-DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF -DGGML_OPENMP=ON
# The wheel is built into a project-local folder named after version, arch and flags, with pip's cache off:
# pip would otherwise reuse any wheel it once built from this sdist, whatever CMAKE_ARGS say now.
LLAMA_KEY := $(shell printf '%s' '$(LLAMA_CPP_VERSION) $(ARCH) $(LLAMA_CMAKE_ARGS)' | sha256sum | cut -c1-12)
WHEELHOUSE := .wheels/llama-cpp-$(LLAMA_KEY)

.PHONY: install run test bench clean distclean

$(WHEELHOUSE)/.built:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "datagen needs Python >= 3.11 (set PYTHON=python3.11)")'
	@echo "building llama-cpp-python $(LLAMA_CPP_VERSION) for $(ARCH), portable (once; 5-8 min on 2 cores) -> $(WHEELHOUSE)"
	rm -rf $(WHEELHOUSE) && mkdir -p $(WHEELHOUSE)
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PYTHON) -m pip wheel --quiet --no-cache-dir --no-deps \
		--no-binary llama-cpp-python --wheel-dir $(WHEELHOUSE) 'llama-cpp-python==$(LLAMA_CPP_VERSION)'
	touch $@

$(BIN)/.installed: pyproject.toml $(WHEELHOUSE)/.built
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "datagen needs Python >= 3.11 (set PYTHON=python3.11)")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip setuptools wheel
	# the portable llama.cpp wheel first (replacing any other build in the venv), then datagen
	$(BIN)/python -m pip install --quiet --force-reinstall --no-deps $(WHEELHOUSE)/llama_cpp_python-*.whl
	$(BIN)/python -m pip install --quiet --find-links $(WHEELHOUSE) -e '.[test]'
	# LLaMA-Factory's dataset parser and converters, for tests/test_export.py; --no-deps keeps torch out
	$(BIN)/python -m pip install --quiet --no-deps 'llamafactory==0.9.5'
	touch $@

install: $(BIN)/.installed

run: install
	$(BIN)/datagen run self-instruct --seeds seeds/175.jsonl

# The report test renders the page in Debian's headless chromium (through its chromedriver).
test: install
	@if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then \
		echo "installing chromium and chromium-driver for the report test"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; fi
	$(BIN)/python -m pytest -ra

bench: install
	$(BIN)/python bench/rouge_novelty.py --quick
	$(BIN)/python bench/minhash.py --quick
	$(BIN)/python bench/teacher_throughput.py --quick
	$(BIN)/python bench/stream_memory.py --quick
	$(BIN)/python bench/embedded_tokens.py --quick

clean:
	rm -rf $(VENV) .pytest_cache

distclean: clean   # also the built llama.cpp wheel (the next install rebuilds it, ~4 min)
	rm -rf .wheels
