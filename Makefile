# Every target creates .venv and installs the package when missing.
PYTHON ?= python3
VENV ?= .venv
STAMP := $(VENV)/.installed-stamp
DEMO_OUT ?= demo-output

.PHONY: demo demo-real test test-slow test-browser browser bench lint docs clean
.PHONY: test-r r-env

$(STAMP): pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/python -m pip install -q -e '.[dev,spatialdata]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/metaniche demo --out $(DEMO_OUT)

# Every examples/<dataset>.toml on the shared real data (skips when ../shared/data is absent).
demo-real: $(STAMP)
	$(VENV)/bin/python scripts/demo_real.py --out demo-real-output

test: $(STAMP)
	$(VENV)/bin/python -m pytest

# The documented real-data examples end to end (skipped by `make test`; tens of minutes).
test-slow: $(STAMP)
	$(VENV)/bin/python -m pytest -m slow

# Headless Chromium for the report checks (tests/report/test_report_browser.py skips without it).
browser:
	command -v chromium || (apt-get update && apt-get install -y chromium)

test-browser: browser $(STAMP)
	$(VENV)/bin/python -m pytest tests/report

bench: $(STAMP)
	$(VENV)/bin/python benchmarks/run.py

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/mypy src

# API reference from the docstrings (docs/api.rst); any Sphinx warning fails the build.
docs: $(STAMP)
	$(VENV)/bin/sphinx-build -q -W --keep-going -b html docs docs/_build/html

clean:
	rm -rf $(VENV) $(DEMO_OUT) demo-real-output .pytest_cache docs/_build

# Peer tools for side-by-side benchmarks (shared/PEERS.md): one venv each, metaniche NOT
# installed in them; they read the tissue file written by the main venv.
SQUIDPY_VENV ?= .venv-squidpy
SCIMAP_VENV ?= .venv-scimap

.PHONY: peers-env test-peers bench-peers

peers-env: $(SQUIDPY_VENV)/.installed-stamp $(SCIMAP_VENV)/.installed-stamp

$(SQUIDPY_VENV)/.installed-stamp:
	test -x $(SQUIDPY_VENV)/bin/python || $(PYTHON) -m venv $(SQUIDPY_VENV)
	$(SQUIDPY_VENV)/bin/python -m pip install -q --upgrade pip
	$(SQUIDPY_VENV)/bin/python -m pip install -q 'squidpy==1.8.2'
	touch $@

$(SCIMAP_VENV)/.installed-stamp:
	test -x $(SCIMAP_VENV)/bin/python || $(PYTHON) -m venv $(SCIMAP_VENV)
	$(SCIMAP_VENV)/bin/python -m pip install -q --upgrade pip
	$(SCIMAP_VENV)/bin/python -m pip install -q 'scimap==2.3.6' 'numcodecs<0.13'
	touch $@

# Agreement with squidpy (skips without .venv-squidpy); not part of `make test`'s needs.
test-peers: $(STAMP)
	$(VENV)/bin/python -m pytest tests/peers -v

bench-peers: $(STAMP)
	$(VENV)/bin/python benchmarks/bench_peers.py

# Cross-check against R on the shared melanoma cohort: spatstat's isotropic Lcross and spicyR's
# count-weighted lmerTest model (scripts/r/spicyr_crosscheck.R). Needs R 4.2 with spatstat,
# lme4, lmerTest and mgcv (Debian: apt-get install r-base-core r-cran-spatstat r-cran-lme4
# r-cran-lmertest r-cran-mgcv); skipped with that reason when Rscript is missing.
# R with spatstat, lme4, lmerTest, mgcv and survival from Debian, for `make test-r` (CI runs both).
R_PACKAGES := r-base-core r-cran-spatstat r-cran-lme4 r-cran-lmertest r-cran-mgcv r-cran-survival
r-env:
	command -v Rscript || (apt-get update && apt-get install -y $(R_PACKAGES))

test-r:
	@if command -v Rscript >/dev/null 2>&1; then \
	  $(MAKE) $(STAMP) && $(VENV)/bin/python -m pytest tests/cohort/test_r_crosscheck.py -rs; \
	else \
	  echo "test-r skipped: Rscript not found; install R with spatstat, lme4, lmerTest and mgcv (make r-env, or apt-get install $(R_PACKAGES))"; \
	fi
