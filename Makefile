# Every target installs what it needs first (a local .venv), so each works on a fresh machine.
PY      := .venv/bin/python
STAMP   := .venv/.installed
GRID    ?= default
export HF_HUB_OFFLINE := 1

.PHONY: setup demo test bench lab notebooks ablate report findings browser-check clean

setup: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	python3 -m venv .venv
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	$(PY) -m pip install --quiet ruff==0.17.6
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (glscl)" >/dev/null
	touch $(STAMP)

demo: $(STAMP)           ## the main job on the embedded default
	.venv/bin/glscl demo

test: $(STAMP)           ## the test suite
	$(PY) -m pytest -q

bench: $(STAMP)          ## benchmarks (print figures; not part of the tests)
	$(PY) benchmarks/bench_head.py
	$(PY) benchmarks/bench_data.py
	.venv/bin/glscl bench
	$(PY) benchmarks/bench_engine.py
	$(PY) benchmarks/bench_alpro.py
	$(PY) benchmarks/bench_grid.py
	$(PY) benchmarks/query_mechanism.py
	$(PY) benchmarks/world_floor.py

lab: $(STAMP)            ## open the tutorials in JupyterLab (prints the URL to open; works as root and headless)
	.venv/bin/jupyter lab notebooks/ --no-browser $(if $(filter 0,$(shell id -u)),--allow-root,)

notebooks: $(STAMP)      ## executed copies of the tutorials (notebooks/executed/) and their HTML export
	mkdir -p notebooks/executed
	for nb in notebooks/0*.ipynb; do \
	  .venv/bin/papermill $$nb notebooks/executed/$$(basename $$nb) --cwd notebooks --kernel python3 || exit 1; \
	  .venv/bin/jupyter nbconvert --to html notebooks/executed/$$(basename $$nb) --output-dir notebooks/executed || exit 1; \
	done

ablate: $(STAMP)         ## run a grid: make ablate GRID=default
	.venv/bin/glscl ablate ablations/$(GRID).yaml

report: $(STAMP)         ## the report of a grid, executed and exported to HTML: make report GRID=default
	mkdir -p runs/grids/$(GRID)
	.venv/bin/papermill notebooks/report.ipynb runs/grids/$(GRID)/report.ipynb --cwd notebooks --kernel python3 \
	  -p grid_dir ../runs/grids/$(GRID)
	.venv/bin/jupyter nbconvert --to html --no-input runs/grids/$(GRID)/report.ipynb --output-dir runs/grids/$(GRID)

findings: $(STAMP)       ## every shipped grid (resumable), then docs/findings.md with its figures and verdicts
	$(PY) -m glscl.lab.grids.findings

browser-check: $(STAMP)  ## a tutorial in JupyterLab + headless Chromium: all cells, every widget moved, screenshots (not a test)
	command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  (apt-get update && apt-get install -y chromium chromium-driver)
	$(PY) -c "import selenium" 2>/dev/null || $(PY) -m pip install --quiet selenium
	$(PY) tools/browser_check.py --notebook $(or $(NOTEBOOK),04_train_and_evaluate) --out docs/screenshots

clean:
	rm -rf .venv build *.egg-info
