# Setup and everyday commands. Each target creates .venv on a fresh machine.
PY := .venv/bin/python
PIP := .venv/bin/pip
STAMP := .venv/.installed
EXTRAS := dev,data,text,eval,plots,molecules

.PHONY: test lint demo install clean data

$(STAMP): pyproject.toml
	test -d .venv || python3 -m venv .venv
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[$(EXTRAS)]'
	$(PIP) install -q --no-deps molsets==0.3.1  # MOSES's data files only (the package itself is never imported)
	touch $(STAMP)

install: $(STAMP)

LINT_DIRS := src tests $(wildcard benchmarks experiments scripts)

lint: $(STAMP)
	.venv/bin/ruff check $(LINT_DIRS)
	.venv/bin/ruff format --check $(LINT_DIRS)
	.venv/bin/mypy

test: lint
	$(PY) -m pytest -q

demo: $(STAMP)
	.venv/bin/bitcompose demo --out runs/demo --overwrite

# Optional system data: Fashion-MNIST (Debian package, 30 MB; needs root). MNIST and the digits come with the extras.
data:
	apt-get install -y dataset-fashion-mnist

clean:
	rm -rf .venv runs .pytest_cache .mypy_cache .ruff_cache
