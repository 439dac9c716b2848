"""Runs INSIDE a network namespace made by tests/test_interop.py (via `ip netns exec`):
brings up a TUN device, runs one scenario between a fasttcp Endpoint and the Linux TCP
stack of the namespace, prints one JSON object with what both sides saw, and leaves a
pcap of the exchange. Usage: python child.py SCENARIO PCAP_PATH
"""
import json
import socket
import subprocess
import sys
import threading
import time

import fasttcp
from fasttcp.pcap import PcapWriter
from fasttcp.tun import Tun, pump

LINUX = "198.18.0.1"        # the namespace's own address, on the TUN device
FASTTCP = "198.18.0.2"      # the endpoint's address, reached through the TUN device
PORT = 8080


def setup():
    tun = Tun("fttun0")
    for cmd in ("ip link set lo up", f"ip addr add {LINUX}/24 dev fttun0", "ip link set fttun0 up"):
        subprocess.run(cmd.split(), check=True)
    return tun


def ss_states(port):
    """Linux's view: TCP states of sockets with `port` on either end (ss -tan)."""
    out = subprocess.run(["ss", "-Htan"], capture_output=True, text=True, check=True).stdout
    states = []
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 5 and (parts[3].endswith(f":{port}") or parts[4].endswith(f":{port}")):
            states.append(parts[0])
    return states


def in_thread(fn):
    result = {}

    def run():
        try:
            result["value"] = fn()
        except Exception as exc:               # reported, not raised: the test asserts on it
            result["error"] = f"{type(exc).__name__}: {exc}"

    th = threading.Thread(target=run, daemon=True)
    th.start()
    return th, result


def payload(n, seed):
    return bytes((i * 31 + seed) & 0xFF for i in range(n))


def recv_all(sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(65536)
        if not chunk:
            break
        buf += chunk
    return bytes(buf)


# ---- scenarios: each returns a dict ----

def fasttcp_client_closes_first(tun, pcap):
    srv = socket.create_server((LINUX, PORT))
    request, response = payload(3000, 1), payload(5000, 2)

    def linux_server():
        c, _ = srv.accept()
        got = recv_all(c, len(request))
        c.sendall(response)
        eof = c.recv(1) == b""                  # fasttcp's FIN
        time.sleep(0.05)
        c.close()
        return {"got_request": got == request, "eof": eof}

    th, lin = in_thread(linux_server)
    ep = fasttcp.Endpoint([FASTTCP], seed=1)
    conn = ep.connect(LINUX, PORT, now=0.0)
    got = bytearray()
    state = {"sent": False, "closed": False}

    def app(now):
        if str(conn.state) == "ESTABLISHED" and not state["sent"]:
            conn.send(request)
            state["sent"] = True
        got.extend(conn.recv())
        if len(got) >= len(response) and not state["closed"]:
            conn.close()
            state["closed"] = True

    ok = pump(ep, tun, until=lambda: str(conn.state) == "TIME-WAIT" and not th.is_alive(),
              on_tick=app, timeout=10, pcap=pcap)
    th.join(2)
    return {"pumped": ok, "state": str(conn.state), "got_response": bytes(got) == response, "linux": lin,
            "ss": ss_states(PORT), "events": [e.cause.name for e in ep.events()]}


def linux_closes_first(tun, pcap):
    srv = socket.create_server((LINUX, PORT))
    response = payload(4000, 3)

    def linux_server():
        c, _ = srv.accept()
        c.sendall(response)
        c.close()                               # Linux closes first
        return {}

    th, lin = in_thread(linux_server)
    ep = fasttcp.Endpoint([FASTTCP], seed=2)
    conn = ep.connect(LINUX, PORT, now=0.0)
    got = bytearray()
    seen = []

    def app(now):
        got.extend(conn.recv())
        st = str(conn.state)
        if not seen or seen[-1] != st:
            seen.append(st)
        if st == "CLOSE-WAIT":
            conn.close()

    ok = pump(ep, tun, until=lambda: str(conn.state) == "CLOSED", on_tick=app, timeout=10, pcap=pcap)
    th.join(2)
    return {"pumped": ok, "states": seen, "got": bytes(got) == response, "ss": ss_states(PORT), "linux": lin}


def linux_client_megabyte_each_way(tun, pcap):
    up, down = payload(1 << 20, 4), payload(1 << 20, 5)
    ep = fasttcp.Endpoint([FASTTCP], seed=3)
    ep.listen(PORT)

    def linux_client():
        s = socket.create_connection((FASTTCP, PORT), timeout=20)
        s.sendall(up)
        s.shutdown(socket.SHUT_WR)
        got = recv_all(s, len(down) + 1)
        s.close()
        return {"got_download": got == down, "download_len": len(got)}

    th, lin = in_thread(linux_client)
    state = {"conn": None, "sent": False, "opts": None}
    got = bytearray()

    def app(now):
        c = state["conn"] or ep.accept()
        state["conn"] = c
        if c is None:
            return
        if state["opts"] is None:
            state["opts"] = {"mss": c.mss, "snd_wscale": c.snd_wscale, "sack": c.sack_permitted,
                             "timestamps": c.timestamps}
        got.extend(c.recv())
        if not state["sent"]:
            c.send(down)
            state["sent"] = True
        if str(c.state) == "CLOSE-WAIT" and c.pending == 0:
            c.close()

    ok = pump(ep, tun, until=lambda: state["conn"] is not None and str(state["conn"].state) == "CLOSED"
              and not th.is_alive(), on_tick=app, timeout=60, pcap=pcap)
    th.join(5)
    return {"pumped": ok, "got_upload": bytes(got) == up, "upload_len": len(got), "linux": lin,
            "options": state["opts"], "state": str(state["conn"].state) if state["conn"] else None,
            "drops": ep.stats["drops"], "retransmissions": ep.stats["retransmissions"]}


def refused_both_ways(tun, pcap):
    ep = fasttcp.Endpoint([FASTTCP], seed=4)        # listens nowhere

    def linux_client():
        try:
            socket.create_connection((FASTTCP, PORT), timeout=5)
            return "connected"
        except ConnectionRefusedError:
            return "refused"

    th, lin = in_thread(linux_client)
    pump(ep, tun, until=lambda: not th.is_alive(), timeout=10, pcap=pcap)
    conn = ep.connect(LINUX, PORT + 1, now=0.0)     # no Linux listener on that port
    ok = pump(ep, tun, until=lambda: str(conn.state) == "CLOSED", timeout=10, pcap=pcap)
    return {"linux": lin, "pumped": ok, "fasttcp_state": str(conn.state),
            "fasttcp_cause": conn.reset_cause.name if conn.reset_cause else None}


def lost_syn_is_retransmitted(tun, pcap):
    srv = socket.create_server((LINUX, PORT))
    th, lin = in_thread(lambda: srv.accept()[0].recv(10))
    ep = fasttcp.Endpoint([FASTTCP], seed=5)
    dropped = []

    def drop(pkt, direction):
        seg = fasttcp.parse(pkt, verify_checksum=False) if direction == "out" else None
        if seg is not None and seg.flags == fasttcp.Flags.SYN and not dropped:
            dropped.append(True)
            return True
        return False

    conn = ep.connect(LINUX, PORT, now=0.0)
    ok = pump(ep, tun, until=lambda: str(conn.state) == "ESTABLISHED", drop=drop, timeout=10, pcap=pcap)
    conn.send(b"after-rto")
    pump(ep, tun, until=lambda: not th.is_alive(), timeout=5, pcap=pcap)
    events = [(e.cause.name, round(e.time, 1)) for e in ep.events()]
    return {"pumped": ok, "dropped": len(dropped), "events": events, "linux": lin}


SCENARIOS = {f.__name__: f for f in (fasttcp_client_closes_first, linux_closes_first,
                                     linux_client_megabyte_each_way, refused_both_ways,
                                     lost_syn_is_retransmitted)}


def main():
    name, pcap_path = sys.argv[1], sys.argv[2]
    tun = setup()
    with PcapWriter(pcap_path) as pcap:
        result = SCENARIOS[name](tun, pcap)
    tun.close()
    print(json.dumps(result, default=str))


if __name__ == "__main__":
    main()
