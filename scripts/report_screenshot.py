#!/usr/bin/env python3
"""Screenshot of an HTML report for the docs: docs/figures/report_screenshot.png.

Runs a tiny offline evaluation with the shipped scene model and ``--report`` into a temporary folder, opens the
page in headless Chromium and saves what it shows::

    .venv/bin/python scripts/report_screenshot.py            # -> docs/figures/report_screenshot.png
    .venv/bin/python scripts/report_screenshot.py --out shot.png --keep /tmp/report

Needs selenium and Debian's chromium and chromium-driver (``apt-get install chromium chromium-driver``).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def chromium(user_data_dir: Path, width: int, height: int):
    """A headless Chromium that stays offline (no background networking, updates or sync)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", f"--user-data-dir={user_data_dir}", f"--window-size={width},{height}",
                 "--hide-scrollbars", "--force-device-scale-factor=1"):
        options.add_argument(flag)
    binary = shutil.which("chromium") or "/usr/bin/chromium"
    options.binary_location = binary
    driver_path = shutil.which("chromedriver") or "/usr/bin/chromedriver"
    return webdriver.Chrome(service=Service(executable_path=driver_path), options=options)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(REPO / "docs" / "figures" / "report_screenshot.png"))
    parser.add_argument("--methods", default="surgery,gradcam,ig:n_steps=8")
    parser.add_argument("--n", type=int, default=8, help="scenes evaluated")
    parser.add_argument("--examples", type=int, default=2, help="scenes whose maps the page shows")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=2000, help="the screenshot's height in px (the page's top)")
    parser.add_argument("--keep", default=None, help="write the run and its report.html here instead of a temp dir")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as scratch:
        run_dir = Path(args.keep) if args.keep else Path(scratch) / "run"
        command = [sys.executable, "-m", "captum_clip.cli", "evaluate", "pointing", "--dataset", "shapes",
                   "--n", str(args.n), "--methods", args.methods, "--out-dir", str(run_dir), "--report",
                   "--examples", str(args.examples), "--quiet"]
        print("running:", " ".join(command), file=sys.stderr)
        subprocess.run(command, check=True, cwd=REPO)
        driver = chromium(Path(scratch) / "chromium-profile", args.width, args.height)
        try:
            driver.get((run_dir / "report.html").resolve().as_uri())
            # The table sorted by the main metric, best first, as a reader would look at it.
            header = driver.find_element("css selector", "#metrics-table thead th.main")
            header.click()
            header.click()
            png = driver.get_screenshot_as_png()
        finally:
            driver.quit()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(png)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
