"""The Linux profile: what packetdrill's scripts assume of the stack under test.

packetdrill's TCP scripts run against Linux with gtests/net/tcp/common/defaults.sh
applied, a TUN device of MTU 1500 and packetdrill's own defaults (config.c). This module
is the one place those assumptions become `Endpoint` settings and runner constants, so a
script written for Linux runs unchanged. What the engine cannot imitate is listed in
docs/packetdrill.md ("Differences from Linux").
"""
from __future__ import annotations

import re
import shlex
from typing import Any

from fasttcp.errors import UsageError

__all__ = ["LOCAL_IP", "REMOTE_IP", "BIND_PORT", "CONNECT_PORT", "FIRST_EPHEMERAL_PORT",
           "TOLERANCE_USECS", "TOLERANCE_PERCENT", "FIRST_FD", "endpoint_settings",
           "apply_command", "PROFILES"]

# packetdrill config.c: the addresses and ports a script's segments use
LOCAL_IP = "192.168.0.1"          # live_local_ip (the stack under test)
REMOTE_IP = "192.0.2.1"           # live_remote_ip (packetdrill's fake peer)
BIND_PORT = 8080                  # live_bind_port: bind(fd, ..., ...) and a SYN with no socket
CONNECT_PORT = 8080               # live_connect_port: connect(fd, ..., ...)
FIRST_EPHEMERAL_PORT = 40000      # the fake peer's port (packetdrill asks the kernel for one)
LOCAL_EPHEMERAL_PORT = 48000      # our port for connect(): Linux's ip_local_port_range is 32768..60999
TOLERANCE_USECS = 4000            # config.c tolerance_usecs
TOLERANCE_PERCENT = 12.5          # config.c tolerance_percent
FIRST_FD = 3                      # stdin/out/err are open: socket() returns 3 first

# The endpoint as Linux with defaults.sh behaves on a 1500-byte-MTU device:
_LINUX: dict[str, Any] = {
    "mss": 1460,                  # MTU 1500 - 40 (tcp_sock_mss)
    # tcp_rmem max 15 MiB -> tcp_select_initial_window() picks wscale 8 on current kernels
    # (upstream scripts expect "wscale 8"); the SYN/SYN-ACK window field is 65535
    "wscale": 8,
    "window": 65535,
    "sack": True,                 # net.ipv4.tcp_sack=1
    "timestamps": True,           # net.ipv4.tcp_timestamps=1
    "msl": 30.0,                  # TCP_TIMEWAIT_LEN 60 s = 2 * MSL
    "syn_cookies": "auto",        # net.ipv4.tcp_syncookies=1: cookies when the SYN queue is full
}

PROFILES = ("linux",)
"""Profiles `run` accepts."""

# sysctls a script may set (in a backquoted block or with `sysctl -q k=v`): the endpoint
# setting each maps to; anything else in a command is unsupported
_SYSCTL_MAP: dict[str, tuple[str, dict[str, Any]]] = {
    "net.ipv4.tcp_timestamps": ("timestamps", {"0": False, "1": True}),
    "net.ipv4.tcp_sack": ("sack", {"0": False, "1": True}),
    "net.ipv4.tcp_window_scaling": ("wscale", {"0": None, "1": 8}),
    "net.ipv4.tcp_syncookies": ("syn_cookies", {"0": "off", "1": "auto", "2": "always"}),
}
# sysctls that only tune what the engine does not have (congestion control, FRTO, ECN,
# pacing, TSO, fastopen, metrics): accepted at their defaults.sh values, nothing to map
_SYSCTL_NOOP = re.compile(r"net\.ipv4\.tcp_(rmem|wmem|syn_retries|synack_retries|frto|dsack|fack|"
                          r"reordering|congestion_control|slow_start_after_idle|early_retrans|"
                          r"recovery|tso_win_divisor|ecn|ecn_option|pacing_ss_ratio|"
                          r"pacing_ca_ratio|notsent_lowat|fastopen|fastopen_key)$")
_DEFAULTS_SH = re.compile(r"(^|/)defaults\.sh$")


def endpoint_settings(profile: str) -> dict[str, Any]:
    """Endpoint keyword arguments of `profile` (a copy the caller may change)."""
    if not isinstance(profile, str) or profile not in PROFILES:
        raise UsageError(f"unknown profile {profile!r}; known: {', '.join(PROFILES)}")
    return dict(_LINUX)


def _sysctl(assignment: str, settings: dict[str, Any]) -> str | None:
    key, eq, value = assignment.partition("=")
    key, value = key.strip().replace("/", "."), value.strip().strip("\"'")
    if not eq:
        return f"sysctl {assignment!r} sets nothing"
    if key in _SYSCTL_MAP:
        name, values = _SYSCTL_MAP[key]
        if value not in values:
            return f"{key}={value} has no equivalent"
        settings[name] = values[value]
        return None
    if _SYSCTL_NOOP.match(key):
        return None
    return f"sysctl {key} has no equivalent"


def apply_command(text: str, settings: dict[str, Any]) -> str | None:
    """Apply a backquoted command's effect to `settings` (Endpoint keyword arguments).
    Returns None if understood, else why it is unsupported. Nothing is executed: the
    only commands understood are defaults.sh (this profile itself) and ``sysctl``
    assignments of the keys above."""
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        try:
            words = shlex.split(line)         # sysctl -q net.ipv4.tcp_rmem="4096 540000 15728640"
        except ValueError:
            return f"command {line!r} is not valid shell"
        if not words:
            continue
        if _DEFAULTS_SH.search(words[0]) and len(words) == 1:
            continue
        if words[0] == "sysctl":
            args = [w for w in words[1:] if not w.startswith("-")]
            if not args:
                return f"command {line!r} sets nothing"
            for assignment in args:
                why = _sysctl(assignment, settings)
                if why:
                    return why
            continue
        return f"command {line!r} is not run by this runner"
    return None
