# Quick start: `make demo` (the offline main job) and `make test` (the suite).
# Both first run tools/bootstrap.sh, which sets up .venv/ (idempotent).
PY := .venv/bin/python

.PHONY: setup lint test demo benchmark study

setup:
	@bash tools/bootstrap.sh

lint: setup
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

test: setup
	$(PY) -m pytest tests

demo: setup
	$(PY) tools/run_demo.py

benchmark: setup
	$(PY) tools/benchmark_adapters.py

study: setup
	$(PY) tools/run_study.py
