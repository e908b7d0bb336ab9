"""Runs the client's JavaScript unit tests (node's built-in runner) as part of the test suite.

They cover the Jingle <-> SDP translator, the MUC/focus stanzas, the roster, the bridge channel
(against a real WebSocket server on loopback) and room-name handling.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

WEB = Path(__file__).resolve().parents[1]


def test_javascript_unit_tests_pass() -> None:
    node = shutil.which("node")
    assert node, "node is required to test the web client"
    assert (WEB / "node_modules").is_dir(), "run services/web/build.sh first (installs the npm dependencies)"
    files = sorted(str(p.relative_to(WEB)) for p in (WEB / "test").glob("*.test.js"))
    assert len(files) >= 4, files
    result = subprocess.run([node, "--test", *files], cwd=WEB, capture_output=True, text=True, timeout=120)
    summary = [line for line in result.stdout.splitlines() if line.startswith(("# pass", "# fail", "not ok"))]
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "# fail 0" in summary, summary
