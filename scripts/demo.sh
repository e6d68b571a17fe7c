#!/usr/bin/env bash
# Set up a virtualenv with the package, then, offline with the shipped model: explain a generated scene (the
# figure), and compare the methods on 16 held-out scenes with their random-weights rows (the HTML report).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e .
.venv/bin/captum-clip demo --out demo.png "$@"
.venv/bin/captum-clip evaluate pointing --dataset shapes --n 16 --methods surgery,clip,gradcam,ig \
  --out-dir demo_report --report --quiet
echo
echo "figure: $(pwd)/demo.png"
echo "report: $(pwd)/demo_report/report.html (open it in a browser; it needs no network)"
