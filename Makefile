# `make demo` and `make test` bootstrap everything: a .venv, torch, the project, then run.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.tokenmill-installed
# torch 2.13.0 is the local CPU wheel here; a torch already in the venv (a CUDA build) is kept.
TORCH_SPEC ?= torch==2.13.0

.PHONY: install demo test lock data clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@if $(PY) -c "import torch" 2>/dev/null; then \
		echo "keeping torch $$($(PY) -c 'import torch; print(torch.__version__)')"; \
	else \
		$(PY) -m pip install "$(TORCH_SPEC)"; \
	fi
	$(PY) -m pip install -c constraints.txt -e ".[dev,lm-eval,bench-peer]"
	@touch $(STAMP)

demo: install
	$(VENV)/bin/tokenmill run --config configs/default.yaml

test: install
	$(PY) -m pytest

# Refresh constraints.txt from the current venv (torch and CUDA wheels left out so that a
# user's own torch is never replaced).
lock: install
	$(PY) -m pip freeze --exclude-editable | grep -viE '^(torch|nvidia-|triton|tokenmill)' | sed -E 's|^([A-Za-z0-9_.-]+) @ file://.*/[A-Za-z0-9_.]+-([0-9][^-]*)-.*|\1==\2|' > constraints.txt

# Rebuild data/ from ../shared/corpora.
data: install
	$(PY) scripts/build_sample_data.py

clean:
	rm -rf runs .pytest_cache
