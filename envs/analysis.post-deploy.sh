#!/usr/bin/env bash
# Snakemake runs this inside the freshly created env, from the working directory (the repository
# root): install the neuroevo package itself, whose dependencies the env file already pins.
set -euo pipefail
pip install --no-deps -e .
