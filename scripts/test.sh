#!/usr/bin/env bash
# Set up a virtualenv with the package and its test extras, then run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
# WordNet 3.0 for the ConVis tests (nltk.download cannot reach its server offline); skipped where apt is unavailable.
if ! [ -d /usr/share/wordnet ] && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wordnet-base) >/dev/null 2>&1 \
    || echo "note: could not install wordnet-base; WordNet tests will skip"
fi
# Headless Chromium and its driver for the HTML report's browser tests (selenium drives them offline).
if ! { command -v chromium && command -v chromedriver; } >/dev/null && command -v apt-get >/dev/null \
    && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver) \
    >/dev/null 2>&1 || echo "note: could not install chromium and chromium-driver; browser tests will skip"
fi
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[test]"
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
