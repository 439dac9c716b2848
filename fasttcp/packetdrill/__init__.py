"""Run packetdrill scripts against the sans-IO `Endpoint` on a virtual clock.

``run(path) -> Result``; the CLI is ``fasttcp packetdrill SCRIPT... [--json]``. See
docs/packetdrill.md for the language subset, the Linux profile and what differs.
"""
from fasttcp.packetdrill.runner import Result, run, run_text
from fasttcp.packetdrill.script import ScriptError, parse_script

__all__ = ["Result", "run", "run_text", "parse_script", "ScriptError"]
