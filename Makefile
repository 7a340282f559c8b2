# Two targets do all the set-up on a fresh machine (Python >= 3.10 with venv):
#   make demo   reproduce the paper's synthetic figures into results/
#   make test   install the test tools and run every test, notebooks included
#               (the browser test needs Debian's chromium: apt-get install chromium)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
OUT ?= results

.PHONY: demo test test-fast test-browser clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

demo: $(VENV)/.installed
	$(BIN)/curvwidgets demo --out $(OUT)

test: $(VENV)/.installed
	$(BIN)/python -m pytest -p no:cacheprovider
	$(BIN)/python -m pytest -p no:cacheprovider --nbval notebooks/ --nbval-sanitize-with notebooks/sanitize.cfg

test-fast: $(VENV)/.installed
	$(BIN)/python -m pytest -p no:cacheprovider -x

# JupyterLab in headless chromium on notebooks/10_dashboard.ipynb; screenshots in test-artefacts/
test-browser: $(VENV)/.installed
	$(BIN)/python -m pytest -p no:cacheprovider -v tests/test_browser.py

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache .hypothesis test-artefacts
