# Two commands on a fresh machine: `make demo` and `make test` (both create .venv first).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO   := runs/demo
GFN    := $(BIN)/gflownets

.PHONY: install demo test test-fast bench clean

# torch is pinned and installed first, on its own: a bare `torch` requirement resolved by pip
# would pull a multi-GB CUDA build.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# Reference implementations that some tests compare against; a test skips (with a message)
# where its package cannot be installed, so a failure here does not stop `make test`.
OPTIONAL := $(VENV)/.optional
$(OPTIONAL): $(STAMP)
	$(BIN)/pip install --quiet pgmpy || echo "pgmpy could not be installed: tests/test_dag.py skips its BDeu comparison"
	$(BIN)/pip install --quiet pymoo==0.6.2 || echo "pymoo could not be installed: tests/test_conditional.py skips its hypervolume comparison"
	$(BIN)/pip install --quiet sb3-contrib==2.9.2 || echo "sb3-contrib could not be installed: tests/test_baselines.py skips its MaskablePPO comparison"
	($(PYTHON) -m venv .venv-holo && .venv-holo/bin/pip install --quiet torch==2.13.0 \
		&& .venv-holo/bin/pip install --quiet pytorch-holo) \
		|| echo "pytorch-holo could not be installed: tests/test_sequences.py skips its Ehrlich comparison"
	touch $(OPTIONAL)

demo: install
	@echo "== 1/4 the tutorial's 8x8 four-corner grid, on-policy trajectory balance"
	$(GFN) train hypergrid --preset tutorial --iters 2000 --overwrite --out $(DEMO)/tutorial
	@echo "== 2/4 the tutorial's offline procedure: 5000 explored samples of an untrained policy"
	$(GFN) train hypergrid --preset tutorial --iters 0 --quiet --overwrite --out $(DEMO)/untrained
	$(GFN) sample $(DEMO)/untrained -n 5000 --exploration 0.5 --out $(DEMO)/explored.csv
	@echo "== 3/4 ... then 200 epochs on them, trajectories drawn backward with P_B"
	$(GFN) train hypergrid --preset tutorial --offline $(DEMO)/explored.csv --epochs 200 \
		--batch-size 500 --final-samples 2000 --overwrite --out $(DEMO)/tutorial-offline
	@echo "== 4/4 a 4-D hypergrid of side 8, with the L1 of 200k samples"
	$(GFN) train hypergrid --ndim 4 --height 8 --iters 2000 --final-samples 200000 --overwrite --out $(DEMO)/hypergrid-4d
	$(GFN) report $(DEMO)/tutorial $(DEMO)/tutorial-offline $(DEMO)/hypergrid-4d
	@echo "plots: $(DEMO)/*/plots/*.png"

# one torch thread per test process and one test process per core (pytest-xdist): the tests'
# tensors are small; on the 2-core machine two threads per process made the suite a third slower
# (902 s against 661 s), and two processes of one thread halved it (498 s against 921 s in CI).
# Tests of --threads set their own
test: install $(OPTIONAL)
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -n auto

test-fast: install
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -n auto -m "not slow"

# speed benchmarks against torchgfn and gfnx, one core per system (peer venvs are created under
# bench/.venvs/): hypergrid 2-D and 4-D, bit sequences, DAG structure learning d = 5
bench: install
	$(BIN)/python bench/hypergrid.py
	$(BIN)/python bench/bitseq_speed.py
	$(BIN)/python bench/dag_speed.py

clean:
	rm -rf $(VENV) .venv-holo runs .pytest_cache
