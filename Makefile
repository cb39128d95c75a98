# Two entry points: `make demo` (set up + main job) and `make test` (test dependencies + tests).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
OUT ?= outputs/ils_generation
TORCH_PINS := torch==2.14.1 torchvision==0.29.1

.PHONY: demo test bench gpu-wheels clean viewer

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

# Wheels the GPU machine lacks (it has torch 2.11, transformers, peft, accelerate, matplotlib, torchvision, ... on
# Python 3.12, no network): pure-Python or cp312 manylinux wheels, no dependencies resolved, into an ignored folder.
# DeepSpeed ships an sdist only: it is built here into a wheel without compiled ops (the trainer uses torch_adam).
GPU_WHEELS ?= .gpu-wheels
GPU_PYTHON_VERSION ?= 3.12
GPU_PLATFORMS := $(foreach p,manylinux_2_28_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64,--platform $(p))
GPU_PURE := monai==1.6.1 segment-anything==1.0 diffusers==0.42.1 ultralytics==8.4.190 ultralytics-thop==2.2.3 \
	ultralytics-platform==0.1.99 pydicom==2.4.5 hjson==3.1.0 pydantic==2.14.4 annotated-types==0.8.0 typing-inspection==0.4.5 \
	importlib-metadata==9.1.0
GPU_BINARY := pydantic-core==2.50.5

gpu-wheels:
	rm -rf $(GPU_WHEELS) && mkdir -p $(GPU_WHEELS)
	$(PIP) download -q --no-deps --only-binary=:all: --python-version $(GPU_PYTHON_VERSION) --implementation cp $(GPU_PLATFORMS) -d $(GPU_WHEELS) $(GPU_PURE) $(GPU_BINARY)
	DS_BUILD_OPS=0 $(PIP) wheel -q --no-deps --no-build-isolation -w $(GPU_WHEELS) deepspeed==0.19.8
	@du -sh $(GPU_WHEELS) && ls $(GPU_WHEELS) | wc -l
	@test $$(du -sm $(GPU_WHEELS) | cut -f1) -lt 48 || { echo "$(GPU_WHEELS) leaves too little of the 64 MiB that travel"; exit 1; }

clean:
	rm -rf $(VENV) outputs .pytest_cache $(VIEWER)/node_modules $(VIEWER)/dist $(VIEWER)/build
