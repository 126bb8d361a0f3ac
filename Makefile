# `make demo` and `make test` do all set-up on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: install demo test clean

# constraints.txt pins the CPU build of torch, so pip never pulls a CUDA build.
# A new package (its __init__.py) changes what the editable install must expose.
$(STAMP): pyproject.toml constraints.txt $(wildcard */__init__.py)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev,onnx,images,plot]'
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(VENV)/bin/nas info mobilenet_v3_small
	$(VENV)/bin/nas search runs/quickstart.yaml

test: install
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) *.egg-info
