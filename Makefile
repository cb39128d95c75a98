# Two entry points: `make demo` (set up + main job) and `make test` (test dependencies + tests).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
OUT ?= outputs/ils_generation
TORCH_PINS := torch==2.14.1 torchvision==0.29.1

.PHONY: demo test bench clean viewer

$(VENV)/.torch:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip wheel setuptools
	$(PIP) install $(TORCH_PINS)
	touch $@

$(VENV)/.core: $(VENV)/.torch setup.cfg
	$(PIP) install -e ".[report]" $(TORCH_PINS)
	touch $@

$(VENV)/.dev: $(VENV)/.torch setup.cfg
	$(PIP) install -e ".[all,dev]" $(TORCH_PINS)
	touch $@

# The main job: the dataset-generation bundle on the bundled real chest X-ray (pairs, masks, overlays).
demo: $(VENV)/.core
	$(PY) -m monai.bundle run --config_file bundles/ils_generation/configs/generation.json --output_dir $(OUT)

test: $(VENV)/.dev viewer
	$(PY) -m pytest -q tests

# The chest X-ray OHIF viewer (apps/ils_label/viewer): the pinned prebuilt @ohif/app from npm, our extension and
# mode bundled with esbuild, app-config.js for the MONAI Label server; served by apps/ils_label/serve.py.
VIEWER := apps/ils_label/viewer
$(VIEWER)/node_modules/.package-lock.json: $(VIEWER)/package.json $(VIEWER)/package-lock.json
	cd $(VIEWER) && npm ci --no-audit --no-fund
	touch $@

viewer: $(VIEWER)/node_modules/.package-lock.json
	cd $(VIEWER) && node build.mjs --out dist --base /viewer/

bench: $(VENV)/.core
	$(PY) -m monai_ils.bench grounding

clean:
	rm -rf $(VENV) outputs .pytest_cache $(VIEWER)/node_modules $(VIEWER)/dist $(VIEWER)/build
