"""The two-command entry point, tasks.py: stopping `python3 tasks.py serve` stops the server it started."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import free_port

pytestmark = pytest.mark.system

ROOT = Path(__file__).resolve().parent.parent


def test_stopping_tasks_serve_stops_the_server_and_the_start_line_names_the_pages(built):
    """SIGTERM to the script that started `cmc-kg serve` reaches the server (it used to keep answering)."""
    port = free_port()
    command = [str(Path(sys.executable).parent / "cmc-kg"), "serve", "--port", str(port),
               "--build-dir", str(built[0].build_dir), "--reload-interval", "0"]
    program = f"import sys, tasks; sys.exit(tasks.run_forwarding_signals({command!r}))"
    wrapper = subprocess.Popen([sys.executable, "-c", program], cwd=ROOT, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"{url}/health", timeout=1)
            break
        except OSError:
            time.sleep(0.2)
    else:
        wrapper.kill()
        raise AssertionError("the server did not start")
    wrapper.send_signal(signal.SIGTERM)
    wrapper.wait(timeout=30)
    started_line = wrapper.stderr.read()
    for page in ("/query", "/explore", "/sparql"):
        assert f"{url}{page}" in started_line, started_line
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"{url}/health", timeout=1)
            time.sleep(0.2)
        except OSError:
            return
    raise AssertionError("the server still answers after tasks.py was stopped")
