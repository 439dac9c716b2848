"""Load a page in headless Chromium (Debian's `chromium`): its console messages, the
boxes of its charts, and a screenshot, without DevTools.

- Console: chromium run with ``--enable-logging=stderr --v=0`` prints each console
  message (errors, CSP violations, uncaught exceptions) as an ``INFO:CONSOLE`` line on
  stderr; the report runs no script, so any such line is a fault.
- Boxes: a copy of the page gets a small probe script (allowed by its hash in the
  copy's Content-Security-Policy, so the page's own policy stays as strict) that
  writes each chart's getBoundingClientRect(), the page height and any error into an
  attribute of <html>; ``--dump-dom`` prints the DOM after load, attribute included.
- Screenshot: ``--screenshot`` of the original page at the probed height.

Every run has a timeout and its own ``--user-data-dir``.
"""
from __future__ import annotations

import base64
import hashlib
import html
import json
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium")
TIMEOUT = 90.0
WIDTH = 1000
MAX_HEIGHT = 16000          # beyond this a software-rendered screenshot gets unwieldy

PROBE = """
window.addEventListener("error", function (e) {
  document.documentElement.setAttribute("data-errors",
    (document.documentElement.getAttribute("data-errors") || "") + e.message + "\\n");
});
window.addEventListener("load", function () {
  var out = [];
  document.querySelectorAll("[data-chart]").forEach(function (el) {
    var r = el.getBoundingClientRect();
    out.push({name: el.getAttribute("data-chart"), tag: el.tagName.toLowerCase(),
              x: r.left + window.scrollX, y: r.top + window.scrollY, w: r.width, h: r.height,
              complete: el.tagName.toLowerCase() !== "img" || (el.complete && el.naturalWidth > 0)});
  });
  document.documentElement.setAttribute("data-probe", JSON.stringify({
    height: document.documentElement.scrollHeight, boxes: out,
    scripts: document.scripts.length - 1}));
});
"""


def require_chromium() -> str:
    """The chromium command; skips the test when it is absent outside CI (CI installs it:
    .ci/run), fails it in CI."""
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed, and CI must have it (.ci/run installs it)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return CHROMIUM


def run_chromium(args: list[str], url: str, *, window: tuple[int, int]) -> subprocess.CompletedProcess:
    """One headless chromium run on `url`, with a private profile directory."""
    exe = require_chromium()
    profile = tempfile.mkdtemp(prefix="fasttcp-chromium-")
    try:
        return subprocess.run(
            [exe, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
             "--force-device-scale-factor=1", f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0",
             f"--window-size={window[0]},{window[1]}", *args, url],
            capture_output=True, text=True, timeout=TIMEOUT, check=False)
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def console_lines(stderr: str) -> list[str]:
    """The console messages chromium logged (``...:CONSOLE...] "message", source: ...``)."""
    return [line for line in stderr.splitlines() if re.search(r":CONSOLE(\(|:|\])", line)]


@dataclass
class Probe:
    height: int
    boxes: list[dict]
    errors: str
    scripts: int


def probe(page: Path, workdir: Path) -> Probe:
    """Chart boxes, page height and script errors of `page`, from a probed copy."""
    text = page.read_text(encoding="utf-8")
    digest = base64.b64encode(hashlib.sha256(PROBE.encode()).digest()).decode()
    csp = re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]*)">', text)
    assert csp, "the page has no Content-Security-Policy"
    policy = html.unescape(csp.group(1)) + f"; script-src 'sha256-{digest}'"
    probed = text.replace(csp.group(0), f'<meta http-equiv="Content-Security-Policy" '
                                        f'content="{html.escape(policy)}"><script>{PROBE}</script>', 1)
    copy = workdir / f"probe-{page.name}"
    copy.write_text(probed, encoding="utf-8")
    done = run_chromium(["--dump-dom"], copy.as_uri(), window=(WIDTH, 800))
    assert done.returncode == 0, done.stderr[-2000:]
    found = re.search(r'data-probe="([^"]*)"', done.stdout)
    assert found, f"the probe did not run: {console_lines(done.stderr)}"
    data = json.loads(html.unescape(found.group(1)))
    errors = re.search(r'data-errors="([^"]*)"', done.stdout)
    return Probe(int(data["height"]), data["boxes"], html.unescape(errors.group(1)) if errors else "",
                 int(data["scripts"]))


def screenshot(page: Path, png: Path, height: int) -> list[str]:
    """Screenshot `page` at WIDTH x `height` into `png`; returns the console lines."""
    done = run_chromium([f"--screenshot={png}"], page.as_uri(), window=(WIDTH, min(height, MAX_HEIGHT)))
    assert done.returncode == 0, done.stderr[-2000:]
    assert png.exists() and png.stat().st_size > 0, done.stderr[-2000:]
    return console_lines(done.stderr)


def ink_fraction(png: Path, box: dict, background: tuple[int, int, int] = (255, 255, 255)) -> float:
    """The share of the pixels in `box` (CSS px = screenshot px at scale 1) that differ
    from `background` by more than a faint anti-aliasing step."""
    import numpy as np
    from PIL import Image

    with Image.open(png) as im:
        rgb = np.asarray(im.convert("RGB"), dtype=np.int16)
    x0, y0 = max(0, int(box["x"])), max(0, int(box["y"]))
    x1, y1 = min(rgb.shape[1], int(box["x"] + box["w"])), min(rgb.shape[0], int(box["y"] + box["h"]))
    region = rgb[y0:y1, x0:x1]
    if region.size == 0:
        return 0.0
    differs = np.abs(region - np.array(background, np.int16)).max(axis=2) > 24
    return float(differs.mean())


def artifacts_dir(tmp_path: Path) -> Path:
    """Where screenshots are kept: $FASTTCP_ARTIFACTS/report if set, else the test's
    pytest tmp_path (kept by pytest for the last few runs)."""
    root = os.environ.get("FASTTCP_ARTIFACTS")
    out = Path(root) / "report" if root else tmp_path
    out.mkdir(parents=True, exist_ok=True)
    return out
