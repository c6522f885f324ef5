"""Screenshots of every dashboard page, for a human look: headless Chromium against a local Streamlit server.

    .venv/bin/python docs/screenshots.py [--out docs/screenshots] [--chromium chromium]

Renders each method page on the fixture result folders of ``tests/dashboard_fixtures.py`` (report.json in the
agreed verdict schema; the host's modules are stood in for when it is not installed), one PNG per page. Needs
``chromium`` (``apt-get install chromium``) and streamlit. CI runs the same pages with AppTest
(``tests/test_dashboard.py``); this script is for looking at them.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PAGES = ("cbd_sae_difference", "contrastive_bio_sae")

# The Streamlit script: the page named by ?page=..., on the fixture results (argv: tests folder, results folder).
APP = """
import importlib, sys
from pathlib import Path
import streamlit as st
sys.path.insert(0, sys.argv[1])
from dashboard_fixtures import install_host_stub
install_host_stub()
page = st.query_params.get("page", "cbd_sae_difference")
st.title(page)
class Method:
    results_dir = Path(sys.argv[2])
importlib.import_module(f"cbd_plugin.methods.{page}.dashboard").visualize(Method())
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"streamlit did not answer at {url} within {timeout:.0f} s") from None
            time.sleep(0.5)


def screenshot(chromium: str, url: str, png: Path) -> None:
    # The virtual-time budget lets Streamlit's websocket deliver and plotly draw before the capture.
    subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--window-size=1280,1800",
            "--virtual-time-budget=20000",
            f"--screenshot={png}",
            url,
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    if not png.exists() or png.stat().st_size == 0:
        raise RuntimeError(f"chromium wrote no screenshot for {url}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "screenshots")
    parser.add_argument("--warmup", type=float, default=45, help="seconds for the first page run's imports")
    parser.add_argument("--chromium", default=shutil.which("chromium") or shutil.which("chromium-browser"))
    args = parser.parse_args()
    if not args.chromium:
        sys.exit("screenshots: no chromium found; install it (apt-get install chromium) or pass --chromium PATH")
    sys.path.insert(0, str(REPO / "tests"))
    from dashboard_fixtures import make_results

    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        results = Path(tmp) / "results"
        make_results(results)
        app = Path(tmp) / "pages.py"
        app.write_text(APP)
        port = free_port()
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "streamlit",
                "run",
                str(app),
                "--server.headless=true",
                f"--server.port={port}",
                "--browser.gatherUsageStats=false",
                "--",
                str(REPO / "tests"),
                str(results),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            wait_for(f"http://127.0.0.1:{port}/_stcore/health")
            for page in PAGES:  # warm-up: the first run of a page imports torch and the plugin (slow); the
                # import finishes in the server even after this browser leaves, and later sessions reuse it
                screenshot(args.chromium, f"http://127.0.0.1:{port}/?page={page}", Path(tmp) / "warmup.png")
            time.sleep(args.warmup)
            for page in PAGES:
                png = args.out / f"{page}.png"
                screenshot(args.chromium, f"http://127.0.0.1:{port}/?page={page}", png)
                print(f"{png} ({png.stat().st_size // 1024} KiB)")
        finally:
            server.terminate()
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
