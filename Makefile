# Figures, notebooks and tests. Every target is one command you can also type yourself.
PYTHON ?= python

.PHONY: help figures figures-quick docs-figures test test-figures notebooks-clean

help:
	@echo "make figures        every paper figure at the paper's settings (512 px, 1000 iterations) -> figures/, docs/"
	@echo "make figures-quick  the same figures at 96-128 px, 30-60 iterations (minutes on a CPU) -> figures/quick/"
	@echo "make docs-figures   quick figures plus their small copies in docs/"
	@echo "make test           the whole test suite (what CI runs)"
	@echo "make notebooks-clean  strip outputs from notebooks/*.ipynb before committing"

figures:
	$(PYTHON) -m experiments.make_figures --docs

figures-quick:
	$(PYTHON) -m experiments.make_figures --quick

docs-figures:
	$(PYTHON) -m experiments.make_figures --quick --docs

test:
	$(PYTHON) -m pytest -q

test-figures:
	$(PYTHON) -m pytest -q tests/test_figures.py tests/test_score.py tests/test_plot.py tests/test_notebooks.py

notebooks-clean:
	$(PYTHON) -c "import nbformat, glob; [nbformat.write(nb, p) for p in glob.glob('notebooks/*.ipynb') for nb in [nbformat.read(p, 4)] if [c.update(outputs=[], execution_count=None) for c in nb.cells if c.cell_type == 'code'] is not None]"
