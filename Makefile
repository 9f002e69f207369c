# Everything a fresh machine needs: `make test` and `make demo` create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Which torch build to install when none is importable. On this project's machines the plain
# name resolves to the CPU wheel kept locally (so `make` works offline); on a usual Linux machine
# it is the CUDA build, so pick the CPU one there with
#   make test TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu"
TORCH_SPEC ?= torch==2.13.0
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: test demo benchmark benchmark-report check-glb clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install "$(TORCH_SPEC)"
	$(PY) -m pip install -e ".[test]"
	touch $@

test: $(VENV)/.installed
	$(PY) -m pytest -q

demo: $(VENV)/.installed
	$(VENV)/bin/voxmesh demo out

benchmark: $(VENV)/.installed
	$(PY) benchmarks/run_all.py

# docs/benchmarks.md (+ .json and plots in docs/benchmarks/): every method side by side. Reuses
# the finished runs in BENCH_RUNS and trains the missing ones (hours on a CPU); BENCH_FLAGS=--quick
# checks the whole pipeline in about a minute on the tiny dataset (then point BENCH_DATA and
# BENCH_RUNS at scratch folders and --out elsewhere: BENCH_OUT). The target regenerates the report,
# so it replaces an existing one (--overwrite).
BENCH_DATA ?= data/synth_small
BENCH_RUNS ?= runs/small
BENCH_OUT ?= docs/benchmarks.md
BENCH_FLAGS ?=
benchmark-report: $(VENV)/.installed
	$(VENV)/bin/voxmesh benchmark --data $(BENCH_DATA) --runs $(BENCH_RUNS) --out $(BENCH_OUT) --overwrite $(BENCH_FLAGS)

# `make demo`'s out/demo.glb through the Khronos glTF validator, three.js in headless
# Chromium and Blender's glTF importer, which must play it within 0.1 mm of the motion it was
# made from (out/demo.npy: the demo's sentence, model and seed); Blender's render of the
# widest mouth goes to out/demo_blender.png. npm packages are installed on first use;
# GLB_CHECK_FLAGS=--install adds Chromium and Blender (apt-get, as root), --no-blender leaves
# Blender out (then drop the .npy: GLB_CHECK_NPY=).
GLB_CHECK_FLAGS ?=
GLB_CHECK_NPY ?= --npy out/demo.npy
check-glb: $(VENV)/.installed
	test -f out/demo.glb || $(MAKE) demo
	test out/demo.npy -nt out/demo.glb || $(VENV)/bin/voxmesh animate out/demo_speech.wav -o out/demo.npy --seed 0 --overwrite
	$(PY) scripts/check_glb.py out/demo.glb $(GLB_CHECK_NPY) --render out --json out/glb_check.json $(GLB_CHECK_FLAGS)

clean:
	rm -rf $(VENV) out .pytest_cache
