# The two commands of the README. Both set up .venv first (scripts/setup_env.sh: seconds when the
# environment exists, ~8 min the first time on a new machine: mmcv's C++ ops are compiled once and
# the wheel cached in ~/.cache/mtr_mm).
PY := .venv/bin/python

.PHONY: setup demo test
setup:
	bash scripts/setup_env.sh

demo: setup
	$(PY) tools/demo.py

test: setup
	$(PY) -m pytest tests -q -p no:cacheprovider
