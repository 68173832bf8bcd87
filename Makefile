# The two commands a fresh clone needs:  `make demo`  and  `make test`.
PYTHON ?= python3
PIP    := $(PYTHON) -m pip
STAMP  := .install.stamp

.PHONY: install demo test bench profile report clean

# Installs what is missing: pinned CPU torch first (a bare `torch` would pull a
# multi-GB CUDA build), then the project with its dev extras, then DeepSpeed
# (its FLOPs profiler) without build isolation so it builds against that torch.
install: $(STAMP)
$(STAMP): pyproject.toml
	$(PIP) install -q "torch==2.13.0"
	$(PIP) install -q -e ".[dev]"
	DS_BUILD_OPS=0 $(PIP) install -q --no-build-isolation deepspeed
	touch $(STAMP)

demo: install
	$(PYTHON) -m harness.cli demo

test: install
	$(PYTHON) -m pytest tests

bench: install
	$(PYTHON) -m pytest benchmarks --benchmark-enable --benchmark-autosave

# refreshes the committed reports/profile.{md,csv} (the command alone writes runs/profile/)
profile: install
	$(PYTHON) -m harness.cli profile --out reports

report: install
	$(PYTHON) -m harness.cli report

clean:
	rm -f $(STAMP)
