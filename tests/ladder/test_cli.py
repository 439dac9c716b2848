"""`fasttcp ladder`, run as the real command line in a subprocess."""
from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from fasttcp.diagram import run_scenario, scenario_names

ROOT = Path(__file__).resolve().parents[2]
CAPTURE = ROOT / "tests" / "data" / "tcpdump-tcp-handshake-nano.pcap"
TIMEOUT = 120


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fasttcp", "ladder", *args], capture_output=True, text=True,
                          timeout=TIMEOUT, cwd=ROOT, env=env, encoding="utf-8")


def test_scenario_list_names_every_scenario():
    out = _run("--scenario", "list")
    assert out.returncode == 0
    assert [line.split()[0] for line in out.stdout.splitlines()] == scenario_names()


def test_scenario_text_is_the_api_drawing():
    out = _run("--scenario", "four-way")
    assert out.returncode == 0 and out.stdout == run_scenario("four-way").render("text")
    ascii = _run("--scenario", "four-way", "--ascii")
    assert ascii.stdout == run_scenario("four-way").render("text", ascii=True) and ascii.stdout.isascii()


def test_a_c_locale_gets_ascii(tmp_path):
    import os

    env = dict(os.environ, PYTHONIOENCODING="ascii", LC_ALL="C")
    out = _run("--scenario", "reset", env=env)
    assert out.returncode == 0 and out.stdout.isascii() and "|--- SYN" in out.stdout


def test_capture_to_json_and_svg_files(tmp_path):
    out = _run(str(CAPTURE), "--conn", "0", "--format", "json")
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert [(r["dir"], r["flags"], r["client_state"], r["server_state"]) for r in rows] == [
        (">", "SYN", "SYN-SENT", "SYN-RECEIVED"), ("<", "SYN|ACK", "ESTABLISHED", "SYN-RECEIVED"),
        (">", "ACK", "ESTABLISHED", "ESTABLISHED")]
    svg = tmp_path / "l.svg"
    assert _run(str(CAPTURE), "--filter", ":80", "--format", "svg", "-o", str(svg)).returncode == 0
    assert ET.parse(svg).getroot().tag.endswith("svg")
    mermaid = _run(str(CAPTURE), "--format", "mermaid")
    assert mermaid.stdout.startswith("sequenceDiagram\n")


@pytest.mark.parametrize("args, message", [
    ([], "give a capture file or --scenario"),
    (["--scenario", "nope"], "no scenario 'nope'"),
    (["x.pcap", "--scenario", "reset"], "not both"),
    (["--scenario", "reset", "--conn", "1"], "about a capture"),
    (["/nonexistent.pcap"], "no such capture file"),
    ([str(CAPTURE), "--conn", "3"], "no connection 3"),
    ([str(CAPTURE), "--conn", "-1"], "conn must be an int >= 0"),
    ([str(CAPTURE), "--filter", "nohost:80"], "not a host:port"),
    (["--scenario", "reset", "--width", "20"], "width must be 60..1000"),
    (["--scenario", "reset", "-o", "/nonexistent/dir/out.txt"], "cannot write"),
])
def test_bad_arguments_exit_2_with_a_reason(args, message):
    out = _run(*args)
    assert out.returncode == 2 and message in out.stderr and out.stdout == ""
    assert "Traceback" not in out.stderr


def test_argparse_rejects_a_non_integer_conn():
    out = _run(str(CAPTURE), "--conn", "nan")
    assert out.returncode == 2 and "invalid int value" in out.stderr
