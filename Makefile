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
# serving-tf.txt is no part of .venv either: it pins another TensorFlow for its own venv (see image-venvs).
MAIN_REQS  := $(filter-out requirements/scan.txt requirements/netpol.txt requirements/serving-tf.txt,$(wildcard requirements/*.txt))
# The images `make images` builds, tagged as the dev stack references them (image.* defaults; trainer-gpu is
# image.trainerGpu, used when training.gpus > 0).
IMAGES    := trainer sidecar tensorboard trainer-gpu
IMAGE_TAG ?= 0.1.0
IMAGE_REPO ?= kubeflow-e2e

.PHONY: install demo test bench lint lock clean image-venvs images e2e-tools e2e-images e2e

install: $(STAMP) $(SCAN_STAMP) $(NETPOL_STAMP)

$(STAMP): requirements/dev.txt requirements/trainer.txt requirements/infra.txt requirements/sidecar.txt requirements/constraints.txt
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

test: $(STAMP) $(SCAN_STAMP) $(NETPOL_STAMP) image-venvs
	SCAN_VENV=$(SCAN_VENV) NETPOL_VENV=$(NETPOL_VENV) $(PY) -m pytest

# One venv per image (only requirements/<image>.txt under the constraints) plus serving-tf, cached by the files'
# hash under ~/.cache/kubeflow-e2e/venvs (or $$IMAGE_VENVS): tests/images runs each image's commands in its own.
image-venvs: $(STAMP)
	$(PY) -m tests.images.venvs
	$(PY) -m tests.images.venvs trainer-gpu

# Builds the images with a local Docker engine; says so in one line (exit 1) when none answers.
images:
	@command -v docker >/dev/null 2>&1 || { echo "make images: no docker command: install Docker (engine and client) and run make images again" >&2; exit 1; }
	@docker info >/dev/null 2>&1 || { echo "make images: no Docker engine answers ('docker info' failed): start the Docker daemon, or point DOCKER_HOST at one, and run make images again" >&2; exit 1; }
	@for image in $(IMAGES); do \
	  echo "docker build -f docker/$$image.Dockerfile -t $(IMAGE_REPO)/$$image:$(IMAGE_TAG) ."; \
	  docker build -f docker/$$image.Dockerfile -t $(IMAGE_REPO)/$$image:$(IMAGE_TAG) . || exit 1; \
	done

# End-to-end: the real Pulumi CLI and kubernetes provider against a real one-node Kubernetes, all built from Go
# modules into ~/.cache/kubeflow-e2e/tools/<versions>/ (first build: see docs/e2e.md).
e2e-tools:
	$(PYTHON) e2e/tools.py

# The images the real node runs, built from our Dockerfiles (and the platform's binaries) by buildah, no Docker.
e2e-images: e2e-tools
	$(PYTHON) e2e/images.py

# Runs as root: a real node (containerd, kubelet, kube-proxy) in a network namespace made for the run;
# e2e/host.py restores the host afterwards, on failure and Ctrl-C too.
e2e: $(STAMP) e2e-tools e2e-images
	$(PY) -m e2e.host e2e -x -s -p no:cacheprovider

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
