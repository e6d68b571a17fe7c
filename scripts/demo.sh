#!/usr/bin/env bash
# Set up a virtualenv with the package, then explain a generated scene with the shipped model (offline).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e .
.venv/bin/captum-clip demo --out demo.png "$@"
