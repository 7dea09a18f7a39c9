# Two commands for a new user: `make run` and `make test`. Both create .venv if missing.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
CORES ?= 8
STAMP := $(VENV)/.installed
# TORCH=cpu: torch and torchvision from PyTorch's CPU-only wheel index (envs/torch-cpu.txt), without
# the CUDA build's 3 GB of NVIDIA libraries. Applies when .venv is created (`rm -rf .venv` first
# to switch an existing one).
TORCH ?= pypi

.PHONY: run test lint format dry-run clean slurm-up slurm-down

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(if $(filter cpu,$(TORCH)),$(BIN)/python -m pip install --quiet -r envs/torch-cpu.txt)
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/snakemake --cores $(CORES)

dry-run: $(STAMP)
	$(BIN)/snakemake --cores $(CORES) --dry-run

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/snakefmt --check Snakefile workflow/rules
	$(BIN)/snakemake --lint --cores 1

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .
	$(BIN)/snakefmt Snakefile workflow/rules

clean:
	rm -rf results logs benchmarks .snakemake

# A one-node SLURM cluster on this machine (Debian/Ubuntu, root or sudo), for profiles/slurm and
# tests/workflow/test_slurm.py; a second call leaves a running cluster alone.
slurm-up:
	.ci/slurm-up

# Stop that cluster (slurmd, slurmctld, munged); `make slurm-up` starts it again.
slurm-down:
	.ci/slurm-down
