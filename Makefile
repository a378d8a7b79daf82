# Every target installs what it needs first (a local .venv), so each works on a fresh machine.
PY      := .venv/bin/python
STAMP   := .venv/.installed
export HF_HUB_OFFLINE := 1

.PHONY: setup demo test bench lab clean

setup: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	python3 -m venv .venv
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (glscl)" >/dev/null
	touch $(STAMP)

demo: $(STAMP)           ## the main job on the embedded default
	.venv/bin/glscl demo

test: $(STAMP)           ## the test suite
	$(PY) -m pytest -q

bench: $(STAMP)          ## benchmarks (prints figures; not part of the tests)
	$(PY) benchmarks/bench_head.py

lab: $(STAMP)            ## open the tutorials
	.venv/bin/jupyter lab notebooks/

clean:
	rm -rf .venv build *.egg-info
