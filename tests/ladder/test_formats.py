"""The four formats: SVG that parses as XML with exactly the labels expected, JSON Lines
with the documented fields, text that fits its width (ASCII when asked), Mermaid with
its reserved text escaped."""
from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET

import pytest

from fasttcp.diagram import Arrow, Ladder, run_scenario, scenario_names
from fasttcp.diagram.mermaid import escape

SVG = "{http://www.w3.org/2000/svg}"
RFC_STATES = {"CLOSED", "LISTEN", "SYN-SENT", "SYN-RECEIVED", "ESTABLISHED", "FIN-WAIT-1", "FIN-WAIT-2",
              "CLOSE-WAIT", "CLOSING", "LAST-ACK", "TIME-WAIT"}


def _texts(root: ET.Element, cls: str) -> list[str]:
    return [t.text or "" for t in root.iter(f"{SVG}text") if t.get("class") == cls]


def test_svg_labels_are_the_states_and_flags_of_the_figure():
    root = ET.fromstring(run_scenario("four-way").render("svg"))
    # initial states, then each change where it happens (client before server on a row)
    assert _texts(root, "state") == [
        "CLOSED", "LISTEN", "SYN-SENT", "SYN-RECEIVED", "ESTABLISHED", "ESTABLISHED", "FIN-WAIT-1", "CLOSE-WAIT",
        "FIN-WAIT-2", "TIME-WAIT", "LAST-ACK", "CLOSED", "CLOSED"]
    assert _texts(root, "flags") == ["SYN", "SYN|ACK", "ACK", "ACK", "ACK", "FIN|ACK", "ACK", "FIN|ACK", "ACK"]
    assert _texts(root, "side") == ["client 198.18.0.1:40000", "server 198.18.0.2:80"]
    assert _texts(root, "event") == ["client 2MSL expired"]
    times = [float(t) for t in _texts(root, "time")[1:]]
    assert times == sorted(times) and times[0] == 0.0 and times[-1] == pytest.approx(60.08)


@pytest.mark.parametrize("name", scenario_names())
def test_svg_is_self_contained(name):
    doc = run_scenario(name).render("svg")
    root = ET.fromstring(doc)
    assert root.tag == f"{SVG}svg" and float(root.get("width")) > 0 and float(root.get("height")) > 0
    ids = {e.get("id") for e in root.iter() if e.get("id")}
    for e in root.iter():
        assert e.tag not in (f"{SVG}image", f"{SVG}script", f"{SVG}foreignObject", f"{SVG}use")
        for key, value in e.attrib.items():
            assert "href" not in key
            for ref in re.findall(r"url\(([^)]*)\)", value):
                assert ref.startswith("#") and ref[1:] in ids
    assert "@import" not in doc and "http" not in doc.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert set(_texts(root, "state")) <= RFC_STATES


def test_svg_escapes_text():
    ladder = Ladder("a<b&c", "d>e", "CLOSED", "LISTEN", [Arrow(0.0, "=", note="x < y & z")])
    root = ET.fromstring(ladder.render("svg"))
    assert _texts(root, "side")[0] == "client a<b&c" and _texts(root, "event") == ["x < y & z"]


@pytest.mark.parametrize("name", scenario_names())
def test_json_lines_have_the_documented_fields(name):
    ladder = run_scenario(name)
    rows = [json.loads(line) for line in ladder.render("json").splitlines()]
    assert len(rows) == len([a for a in ladder.arrows if a.dir != "="])
    for row in rows:
        assert {"t", "dir", "flags", "seq", "ack", "len", "client_state", "server_state"} <= set(row)
        assert row["dir"] in (">", "<")
        assert row["client_state"] in RFC_STATES and row["server_state"] in RFC_STATES
        assert isinstance(row["seq"], int) and (row["ack"] is None or isinstance(row["ack"], int))


def test_json_of_the_three_way_handshake():
    rows = [json.loads(line) for line in run_scenario("three-way").to_json().splitlines()]
    picked = [{k: r[k] for k in ("dir", "flags", "seq", "ack", "len", "client_state", "server_state")}
              for r in rows]
    assert picked == [
        {"dir": ">", "flags": "SYN", "seq": 0, "ack": None, "len": 0, "client_state": "SYN-SENT",
         "server_state": "SYN-RECEIVED"},
        {"dir": "<", "flags": "SYN|ACK", "seq": 0, "ack": 1, "len": 0, "client_state": "ESTABLISHED",
         "server_state": "SYN-RECEIVED"},
        {"dir": ">", "flags": "ACK", "seq": 1, "ack": 1, "len": 0, "client_state": "ESTABLISHED",
         "server_state": "ESTABLISHED"},
    ]


@pytest.mark.parametrize("width", [60, 80, 132])
@pytest.mark.parametrize("name", scenario_names())
def test_text_fits_its_width(name, width):
    for ascii in (False, True):
        text = run_scenario(name).render("text", width=width, ascii=ascii)
        assert max(len(line) for line in text.splitlines()) <= width
        if ascii:
            assert text.isascii()


def test_text_shows_each_state_where_it_is_entered():
    lines = run_scenario("three-way").render("text", ascii=True).splitlines()
    assert lines[1].split() == ["CLOSED", "|", "|", "LISTEN"]
    syn = next(line for line in lines if "SYN seq=0" in line)
    assert syn.split()[:2] == ["0.000", "SYN-SENT"] and syn.rstrip().endswith("SYN-RECEIVED")
    assert syn.index("--- SYN") < syn.index("->|")


def test_mermaid_escapes_reserved_text():
    assert escape("end") == "(end)" and escape("the end; #1") == "the (end)#59; #35;1"
    assert escape("legend") == "legend"
    ladder = Ladder("c", "s", "CLOSED", "LISTEN", [Arrow(0.5, "=", note="end; see #3")])
    text = ladder.render("mermaid")
    assert "    Note over C,S: 0.500 (end)#59; see #35;3\n" in text
    body = text.split("\n", 1)[1]
    assert ";" not in body.replace("#59;", "").replace("#35;", "")


def test_mermaid_draws_a_lost_segment_with_a_cross():
    text = run_scenario("lost-syn").render("mermaid")
    assert text.startswith("sequenceDiagram\n")
    assert [ln.split(":")[0].strip() for ln in text.splitlines() if "SYN seq=0" in ln] == ["C-xS", "C-xS", "C->>S"]
