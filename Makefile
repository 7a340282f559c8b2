# Two targets do all the set-up on a fresh machine (Python >= 3.10 with venv):
#   make demo   the paper's workflow on the embedded data (train, spectra, landscapes, figures) into results/
#   make test   install the test tools and run every test, notebooks included (the unit tests on
#               TEST_WORKERS=2 processes)
#               (the browser test needs Debian's chromium: apt-get install chromium)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
OUT ?= results
# where make test runs the notebooks of the small preset and the demo
RUNS ?= test-artefacts/runs
# the CIFAR notebooks default to the paper's GPU-sized runs, 03/04 to the paper's P = 10000 (minutes of
# dense eigendecomposition each on two cores) and 12 to 2000 steps at three step sizes (minutes): make test
# executes them with the small preset and checks those runs with nbval; the other notebooks' stored outputs
# are checked as they are. make test-paper checks every stored notebook at its own (paper) sizes.
CIFAR_NOTEBOOKS := 00_quickstart 07_vgg16_cifar100_spectrum 08_vgg16_cifar100_landscape 09_vgg16_cifar10
SMALL_NOTEBOOKS := $(CIFAR_NOTEBOOKS) 03_wigner 04_marchenko_pastur 12_edge_of_stability
NBVAL := --nbval-sanitize-with notebooks/sanitize.cfg
# make test runs the unit tests on this many pytest-xdist workers, each module on one worker (its module-scoped
# fixtures built once), the two browser modules one after the other on one worker and first (tests/conftest.py);
# each worker's torch gets cores / workers threads. TEST_WORKERS=1 runs them in one process.
TEST_WORKERS ?= 2
XDIST := $(if $(filter 1,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadgroup --no-loadscope-reorder)

.PHONY: demo test test-notebooks test-small-notebooks test-demo test-fast test-browser test-paper clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

demo: $(VENV)/.installed
	$(BIN)/curvwidgets demo --out $(OUT)

# After the unit tests, the three notebook and demo checks below run two at a time, on one torch thread each
# (two threads each, on two cores, would crowd each other out), every one's output printed whole once it ends
test: $(VENV)/.installed
	$(BIN)/python -m pytest -p no:cacheprovider $(XDIST)
	OMP_NUM_THREADS=1 $(MAKE) -j2 --output-sync=target test-small-notebooks test-notebooks test-demo

# the notebooks but the small-preset ones, their stored outputs checked by nbval
test-notebooks: $(VENV)/.installed
	$(BIN)/python -m pytest -p no:cacheprovider --nbval notebooks/ $(NBVAL) $(SMALL_NOTEBOOKS:%=--ignore=notebooks/%.ipynb)

# the small preset's notebooks run, then checked by nbval against that run
test-small-notebooks: $(VENV)/.installed
	rm -rf $(RUNS)/notebooks
	$(BIN)/curvwidgets reproduce --preset small --out $(RUNS)/notebooks $(SMALL_NOTEBOOKS)
	$(BIN)/python -m pytest -p no:cacheprovider --nbval $(RUNS)/notebooks $(NBVAL)

# make demo, its printed summary checked against the format of the README's block
test-demo: $(VENV)/.installed
	rm -rf $(RUNS)/demo
	$(MAKE) demo OUT=$(RUNS)/demo | $(BIN)/python scripts/update_readme_demo.py --check-output

# the stored outputs of every notebook but the CIFAR ones, re-executed at the paper's sizes (about 10 minutes)
test-paper: $(VENV)/.installed
	$(BIN)/python -m pytest -p no:cacheprovider --nbval notebooks/ $(NBVAL) $(CIFAR_NOTEBOOKS:%=--ignore=notebooks/%.ipynb)

test-fast: $(VENV)/.installed
	$(BIN)/python -m pytest -p no:cacheprovider -x

# every widget of the notebooks used in JupyterLab in headless chromium (the widget cells of notebooks 01-06,
# notebook 10 with smaller parameters) and the Voila app, checked after each action;
# screenshots in test-artefacts/browser/
test-browser: $(VENV)/.installed
	$(BIN)/python -m pytest -p no:cacheprovider -v --durations=0 tests/test_browser.py tests/test_voila.py

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache .hypothesis test-artefacts
