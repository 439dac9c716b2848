# Everyday targets. `make annotate` writes fasttcp/_core/*.html (cython -a): keep the
# hot loops white.
PY ?= python3

.PHONY: build test bench annotate debug lint clean
build:
	$(PY) -m pip install -e '.[test]' --no-build-isolation -q
test: build
	$(PY) -m pytest
bench: build
	fasttcp bench
	$(PY) -m pytest benchmarks --benchmark-only -q
annotate:
	FASTTCP_ANNOTATE=1 $(PY) -m pip install -e . --no-build-isolation -q
debug:
	FASTTCP_DEBUG=1 $(PY) -m pip install -e . --no-build-isolation -q
lint:
	ruff check fasttcp tests benchmarks
	cython-lint fasttcp/_core
	mypy fasttcp/_core/*.pyi
clean:
	rm -rf build *.egg-info fasttcp/_core/*.c fasttcp/_core/*.so fasttcp/_core/*.html
