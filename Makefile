# Each target sets up .venv first, so on a fresh clone `make test` or `make demo` is the only command needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: test demo tutorial results bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[dev]"
	touch $(STAMP)

# the unit and property tests, then every notebook of tutorial/ executed top to bottom (nbmake)
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q --hypothesis-profile=ci --nbmake tests tutorial

# the main job: pixel-level attention on built-in images, then a real training run (tiny preset) and its evaluation
demo: $(STAMP)
	$(BIN)/deepfill-min attention-demo --out runs/attention-demo.png
	rm -rf runs/demo-tiny
	$(BIN)/deepfill-min train --preset tiny --run-dir runs/demo-tiny

# the step-by-step notebooks, in Jupyter (installs the `tutorial` extra first)
tutorial: $(STAMP)
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[tutorial]"
	$(BIN)/jupyter lab tutorial

# docs/results.md: the tiny preset trained with and without contextual attention, then evaluated with the baselines
results: $(STAMP)
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[eval]"
	rm -rf runs/results-attention runs/results-baseline
	$(BIN)/deepfill-min train --preset tiny --run-dir runs/results-attention
	$(BIN)/deepfill-min train --preset tiny --run-dir runs/results-baseline attention=false
	$(BIN)/deepfill-min evaluate --n 64 --out runs/results --checkpoint "with attention=runs/results-attention" \
		"without attention=runs/results-baseline"
	@echo "table: runs/results/results.md (docs/results.md quotes it)"

bench: $(STAMP)
	$(BIN)/python benchmarks/attention.py

clean:
	rm -rf $(VENV) runs .pytest_cache .hypothesis .ruff_cache
