# Two commands on a fresh machine: `make demo` and `make test`. Each creates .venv if missing and installs
# the pinned requirements (re-installing only when a requirements file changed).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# checkov, actionlint, shellcheck, pulumi-policy: their pins clash with the program's (requirements/scan.txt)
SCAN_VENV  ?= .venv-scan
SCAN_STAMP := $(SCAN_VENV)/.installed
# network-config-analyzer (the NetworkPolicy connectivity test): its pins clash with both (requirements/netpol.txt)
NETPOL_VENV  ?= .venv-netpol
NETPOL_STAMP := $(NETPOL_VENV)/.installed
MAIN_REQS  := $(filter-out requirements/scan.txt requirements/netpol.txt,$(wildcard requirements/*.txt))

.PHONY: install demo test bench lint lock clean

install: $(STAMP) $(SCAN_STAMP) $(NETPOL_STAMP)

$(STAMP): $(MAIN_REQS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements/dev.txt
	touch $(STAMP)

$(SCAN_STAMP): requirements/scan.txt policy/requirements.txt
	test -x $(SCAN_VENV)/bin/python || $(PYTHON) -m venv $(SCAN_VENV)
	$(SCAN_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements/scan.txt
	touch $(SCAN_STAMP)

$(NETPOL_STAMP): requirements/netpol.txt
	test -x $(NETPOL_VENV)/bin/python || $(PYTHON) -m venv $(NETPOL_VENV)
	$(NETPOL_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements/netpol.txt
	touch $(NETPOL_STAMP)

bench: $(STAMP)
	$(PY) -m bench

demo: $(STAMP)
	$(PY) -m demo

test: $(STAMP) $(SCAN_STAMP) $(NETPOL_STAMP)
	SCAN_VENV=$(SCAN_VENV) NETPOL_VENV=$(NETPOL_VENV) $(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check .

# Rewrites requirements/constraints.txt from a clean install of the direct pins.
lock:
	rm -rf .venv-lock && $(PYTHON) -m venv .venv-lock
	.venv-lock/bin/pip install --quiet $$(grep -hvE '^(#|-)' requirements/trainer.txt requirements/infra.txt) $$(grep -vE '^(#|-)' requirements/dev.txt)
	{ echo "# Transitive pins, from 'pip freeze' of a clean install of dev.txt. Regenerate with 'make lock'."; \
	  .venv-lock/bin/pip freeze | grep -viE "^($$(grep -hvE '^(#|-)' $(MAIN_REQS) | grep -v constraints | sed -E 's/(\[.*\])?==.*//' | paste -sd'|'))==" ; } > requirements/constraints.txt
	rm -rf .venv-lock

clean:
	rm -rf $(VENV) $(SCAN_VENV) $(NETPOL_VENV) .pytest_cache .ruff_cache
