# Two commands on a fresh machine: `make demo` and `make test`. Each creates .venv if missing and installs
# the pinned requirements (re-installing only when a requirements file changed).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install demo test bench lint lock clean

install: $(STAMP)

$(STAMP): requirements/*.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements/dev.txt
	touch $(STAMP)

bench: $(STAMP)
	$(PY) -m bench

demo: $(STAMP)
	$(PY) -m demo

test: $(STAMP)
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check .

# Rewrites requirements/constraints.txt from a clean install of the direct pins.
lock:
	rm -rf .venv-lock && $(PYTHON) -m venv .venv-lock
	.venv-lock/bin/pip install --quiet $$(grep -hvE '^(#|-)' requirements/trainer.txt requirements/infra.txt) $$(grep -vE '^(#|-)' requirements/dev.txt)
	{ echo "# Transitive pins, from 'pip freeze' of a clean install of dev.txt. Regenerate with 'make lock'."; \
	  .venv-lock/bin/pip freeze | grep -viE "^($$(grep -hvE '^(#|-)' requirements/*.txt | grep -v constraints | sed -E 's/(\[.*\])?==.*//' | paste -sd'|'))==" ; } > requirements/constraints.txt
	rm -rf .venv-lock

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
