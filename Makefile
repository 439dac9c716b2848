# Everyday targets. `make annotate` writes fasttcp/<layer>/*.html (cython -a): keep the
# hot loops white.
PY ?= python3
LAYERS = wire table endpoint tracker capture rows bench

.PHONY: build test bench annotate debug sanitize lint clean
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
sanitize:
	FASTTCP_SANITIZE=1 $(PY) -m pip install -e . --no-build-isolation -q
# the same checks as .ci/run; stubtest needs the compiled modules, hence the build
lint: build
	ruff check fasttcp tests benchmarks setup.py
	cython-lint fasttcp
	$(PY) -m mypy.stubtest fasttcp --allowlist .ci/stubtest-allowlist.txt
clean:
	rm -rf build *.egg-info
	for d in $(LAYERS); do rm -f fasttcp/$$d/*.c fasttcp/$$d/*.so fasttcp/$$d/*.html; done
