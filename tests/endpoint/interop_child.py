"""Runs INSIDE a network namespace (via `ip netns exec`): runs one scenario between a
fasttcp Endpoint and the Linux TCP stack, prints one JSON object with what both sides saw,
and leaves a pcap of the exchange. Two edges:

- TUN (tests/endpoint/test_interop_linux.py): the namespace's own stack is the peer,
  reached through a TUN device the child brings up;
- veth (tests/net/test_interop_veth.py): the child runs in namespace A and pumps the
  endpoint through an `InterfaceLink` on A's veth end; the Linux sockets are made in
  namespace B (the creating thread enters B with setns(2) for the call), so they sit
  behind a real wire; an `RstGuard` keeps A's kernel out of the endpoint's connections.

Usage: python child.py SCENARIO PCAP_PATH [--veth INTERFACE PEER_NAMESPACE [--family 6]]
"""
import ctypes
import json
import os
import socket
import subprocess
import sys
import threading
import time

import fasttcp
from fasttcp.capture.tun import Tun
from fasttcp.capture.tun import pump as tun_pump
from fasttcp.capture.writer import PcapWriter

LINUX = "198.18.0.1"        # the namespace's own address, on the TUN device
FASTTCP = "198.18.0.2"      # the endpoint's address, reached through the TUN device
PORT = 8080
PEER_NS = None              # veth: the namespace the Linux sockets live in
_CLONE_NEWNET = 0x40000000


def setup():
    tun = Tun("fttun0")
    for cmd in ("ip link set lo up", f"ip addr add {LINUX}/24 dev fttun0", "ip link set fttun0 up"):
        subprocess.run(cmd.split(), check=True)
    return tun


class _PeerNamespace:
    """While inside, the calling thread is in PEER_NS (sockets made there stay there)."""

    def __enter__(self):
        if PEER_NS is None:
            return self
        self._libc = ctypes.CDLL(None, use_errno=True)
        self._home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        peer = os.open(f"/run/netns/{PEER_NS}", os.O_RDONLY)
        try:
            if self._libc.setns(peer, _CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns into the peer namespace")
        finally:
            os.close(peer)
        return self

    def __exit__(self, *exc):
        if PEER_NS is not None:
            self._libc.setns(self._home, _CLONE_NEWNET)
            os.close(self._home)


def linux(fn, *args, **kw):
    """fn(*args, **kw) (a socket constructor) in the Linux peer's namespace."""
    if fn is socket.create_server and ":" in args[0][0]:
        kw.setdefault("family", socket.AF_INET6)
    with _PeerNamespace():
        return fn(*args, **kw)


class VethEdge:
    """The veth side of `pump`: one InterfaceLink per endpoint, kept across pumps."""

    def __init__(self, interface):
        from fasttcp.net import lookup_route
        self.route = lookup_route(LINUX)
        assert self.route.interface == interface, (self.route, interface)
        self.links = {}

    def pump(self, ep, **kw):
        from fasttcp.net import InterfaceLink
        if id(ep) not in self.links:
            self.links[id(ep)] = (ep, InterfaceLink(ep, self.route))
        return self.links[id(ep)][1].pump(**kw)

    def close(self):
        for _, link in self.links.values():
            link.close()


def pump(ep, edge, **kw):
    """Run the endpoint over the scenario's edge (a Tun or a VethEdge) until `until()`."""
    if isinstance(edge, VethEdge):
        return edge.pump(ep, **kw)
    return tun_pump(ep, edge, **kw)


def ss_states(port):
    """Linux's view: TCP states of sockets with `port` on either end (ss -tan)."""
    prefix = [] if PEER_NS is None else ["ip", "netns", "exec", PEER_NS]
    out = subprocess.run([*prefix, "ss", "-Htan"], capture_output=True, text=True, check=True).stdout
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
    srv = linux(socket.create_server, (LINUX, PORT))
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
    srv = linux(socket.create_server, (LINUX, PORT))
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
    return _linux_client_each_way(tun, pcap, 1 << 20, fasttcp.Endpoint([FASTTCP], seed=3))


def linux_client_syn_cookie(tun, pcap):
    """The Linux client's handshake answered with a SYN cookie (no SYN-RECEIVED record),
    then 256 KiB each way over the connection the cookie opened."""
    ep = fasttcp.Endpoint([FASTTCP], seed=10, syn_cookies="always")
    r = _linux_client_each_way(tun, pcap, 256 << 10, ep)
    s = ep.stats
    r["cookies"] = {k: s[k] for k in ("syn_cookies_sent", "syn_cookies_ok", "syn_cookies_failed")}
    r["causes"] = [e.cause.name for e in ep.events() if e.cause.name not in ("DATA", "RETRANSMIT")]
    return r


def _linux_client_each_way(tun, pcap, size, ep):
    up, down = payload(size, 4), payload(size, 5)
    ep.listen(PORT)

    def linux_client():
        s = linux(socket.create_connection, (FASTTCP, PORT), timeout=20)
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
            linux(socket.create_connection, (FASTTCP, PORT), timeout=5)
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
    srv = linux(socket.create_server, (LINUX, PORT))
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


def half_close_linux_shuts_write(tun, pcap):
    """Linux shutdown(SHUT_WR): fasttcp (CLOSE-WAIT) keeps sending, then closes."""
    ep = fasttcp.Endpoint([FASTTCP], seed=6)
    ep.listen(PORT)
    body = payload(200_000, 7)

    def linux_client():
        s = linux(socket.create_connection, (FASTTCP, PORT), timeout=10)
        s.sendall(b"request")
        s.shutdown(socket.SHUT_WR)                 # half-close: FIN, keep receiving
        got = recv_all(s, len(body) + 1)
        s.close()
        return {"got": got == body, "len": len(got)}

    th, lin = in_thread(linux_client)
    st = {"conn": None, "sent": False, "states": []}
    req = bytearray()

    def app(now):
        c = st["conn"] or ep.accept()
        st["conn"] = c
        if c is None:
            return
        req.extend(c.recv())
        state = str(c.state)
        if not st["states"] or st["states"][-1] != state:
            st["states"].append(state)
        if state == "CLOSE-WAIT" and not st["sent"]:
            c.send(body)                           # sending after the peer's FIN
            st["sent"] = True
        if st["sent"] and c.pending == 0 and state == "CLOSE-WAIT":
            c.close()

    ok = pump(ep, tun, until=lambda: st["conn"] is not None and str(st["conn"].state) == "CLOSED"
              and not th.is_alive(), on_tick=app, timeout=30, pcap=pcap)
    th.join(2)
    return {"pumped": ok, "request": bytes(req).decode(), "states": st["states"], "linux": lin,
            "events": [e.cause.name for e in ep.events() if e.cause.name not in ("DATA",)]}


def abort_either_side(tun, pcap):
    """Mid-transfer resets: fasttcp abort() -> Linux ECONNRESET; Linux RST -> fasttcp reports it."""
    ep = fasttcp.Endpoint([FASTTCP], seed=7)
    ep.listen(PORT)
    results = {}

    def linux_reader():
        s = linux(socket.create_connection, (FASTTCP, PORT), timeout=10)
        try:
            while s.recv(65536):
                pass
            return "eof"
        except ConnectionResetError:
            return "reset"
        finally:
            s.close()

    th, lin = in_thread(linux_reader)
    st = {"conn": None, "sent": 0}

    def app(now):
        c = st["conn"] or ep.accept()
        st["conn"] = c
        if c is not None and str(c.state) == "ESTABLISHED":
            if st["sent"] < 3:
                c.send(payload(50_000, st["sent"]))
                st["sent"] += 1
            elif c.pending == 0:
                c.abort()                          # RST mid-connection

    pump(ep, tun, until=lambda: not th.is_alive(), on_tick=app, timeout=15, pcap=pcap)
    results["linux_saw"] = lin.get("value", lin.get("error"))
    results["fasttcp_abort_cause"] = st["conn"].reset_cause.name if st["conn"] and st["conn"].reset_cause else None

    # the other way: Linux resets (SO_LINGER 0 + close) while fasttcp is sending
    srv = linux(socket.create_server, (LINUX, PORT + 2))

    def linux_resetter():
        c, _ = srv.accept()
        c.recv(1000)
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        c.close()                                  # RST
        return "reset sent"

    th2, lin2 = in_thread(linux_resetter)
    conn = ep.connect(LINUX, PORT + 2, now=0.0)
    st2 = {"n": 0}

    def app2(now):
        if str(conn.state) == "ESTABLISHED" and st2["n"] < 20:
            conn.send(payload(10_000, st2["n"]))
            st2["n"] += 1

    pump(ep, tun, until=lambda: str(conn.state) == "CLOSED", on_tick=app2, timeout=15, pcap=pcap)
    th2.join(2)
    results["fasttcp_state"] = str(conn.state)
    results["fasttcp_cause"] = conn.reset_cause.name if conn.reset_cause else None
    return results


def thousand_linux_clients(tun, pcap):
    """1,000 concurrent Linux clients against one fasttcp listener, every one completed."""
    import selectors
    n = 1000
    ep = fasttcp.Endpoint([FASTTCP], seed=8, capacity=4096)
    ep.listen(PORT)

    def clients():
        sel = selectors.DefaultSelector()
        socks = []
        for i in range(n):
            s = linux(socket.socket)
            s.setblocking(False)
            s.connect_ex((FASTTCP, PORT))
            sel.register(s, selectors.EVENT_WRITE, i)
            socks.append(s)
        done, replies = 0, {}
        deadline = time.monotonic() + 40
        while done < n and time.monotonic() < deadline:
            for key, mask in sel.select(0.05):
                s, i = key.fileobj, key.data
                if mask & selectors.EVENT_WRITE:
                    s.send(f"client {i}".encode())
                    sel.modify(s, selectors.EVENT_READ, i)
                else:
                    data = s.recv(100)
                    replies[i] = data
                    sel.unregister(s)
                    s.close()
                    done += 1
        return {"completed": sum(1 for i, r in replies.items() if r == f"echo client {i}".encode())}

    th, lin = in_thread(clients)
    conns = []

    def app(now):
        while True:
            c = ep.accept()
            if c is None:
                break
            conns.append(c)
        for c in conns:
            data = c.recv()
            if data:
                c.send(b"echo " + data)
            if str(c.state) == "CLOSE-WAIT" and c.pending == 0:
                c.close()
        conns[:] = [c for c in conns if str(c.state) != "CLOSED"]

    ok = pump(ep, tun, until=lambda: not th.is_alive() and not conns and len(ep) == 0, on_tick=app,
              timeout=60, pcap=pcap)
    th.join(2)
    return {"pumped": ok, "linux": lin, "left": len(ep), "stats": {k: v for k, v in ep.stats.items()
                                                                 if k != "drops"}}


def lost_fin_and_last_ack(tun, pcap):
    """Drop fasttcp's first FIN (retransmitted on RTO), then fasttcp's last ACK (Linux in
    LAST-ACK retransmits its FIN; fasttcp answers from TIME-WAIT): the close completes."""
    srv = linux(socket.create_server, (LINUX, PORT))

    def linux_server():
        c, _ = srv.accept()
        c.recv(100)
        eof = c.recv(1) == b""
        c.close()
        return {"eof": eof}

    th, lin = in_thread(linux_server)
    ep = fasttcp.Endpoint([FASTTCP], seed=9)
    conn = ep.connect(LINUX, PORT, now=0.0)
    log = {"fin": 0, "last_ack": 0, "peer_fin_seen": 0, "peer_fins": 0, "acks_in_time_wait": 0}

    def drop(pkt, direction):
        try:
            seg = fasttcp.parse(pkt, verify_checksum=False)
        except fasttcp.MalformedPacket:
            return False                               # e.g. IPv6 router solicitations
        if direction == "in" and fasttcp.Flags.FIN in seg.flags:
            log["peer_fins"] += 1
            log["peer_fin_seen"] = 1
        if direction == "out" and fasttcp.Flags.FIN in seg.flags and log["fin"] == 0:
            log["fin"] = 1
            return True
        if direction == "out" and seg.flags == fasttcp.Flags.ACK and log["peer_fin_seen"]:
            if log["last_ack"] == 0:
                log["last_ack"] = 1
                return True
            log["acks_in_time_wait"] += 1
        return False

    st = {"sent": False}

    def app(now):
        if str(conn.state) == "ESTABLISHED" and not st["sent"]:
            conn.send(b"bye")
            st["sent"] = True
            conn.close()

    ok = pump(ep, tun, until=lambda: str(conn.state) == "TIME-WAIT" and not th.is_alive()
              and log["acks_in_time_wait"] >= 1 and "LAST-ACK" not in ss_states(PORT),
              on_tick=app, drop=drop, timeout=20, pcap=pcap)
    events = [(e.cause.name, round(e.time, 1)) for e in ep.events()]
    return {"pumped": ok, "linux": lin, "log": log, "events": events, "state": str(conn.state),
            "ss": ss_states(PORT)}

SCENARIOS = {f.__name__: f for f in (fasttcp_client_closes_first, linux_closes_first,
                                     linux_client_megabyte_each_way, refused_both_ways,
                                     lost_syn_is_retransmitted, half_close_linux_shuts_write,
                                     abort_either_side, thousand_linux_clients, lost_fin_and_last_ack,
                                     linux_client_syn_cookie)}


def setup_veth(interface, peer_ns, family):
    """Namespace A's side: the endpoint takes A's address, the Linux peer is B's."""
    global LINUX, FASTTCP, PEER_NS
    from fasttcp.net import RstGuard
    PEER_NS = peer_ns
    LINUX, FASTTCP = ("198.18.0.2", "198.18.0.1") if family == "4" else ("2001:2::2", "2001:2::1")
    guard = RstGuard([FASTTCP]).install()       # every port: namespace A is the endpoint's
    return guard, VethEdge(interface)


def main():
    name, pcap_path = sys.argv[1], sys.argv[2]
    if "--veth" in sys.argv:
        at = sys.argv.index("--veth")
        family = sys.argv[sys.argv.index("--family") + 1] if "--family" in sys.argv else "4"
        guard, edge = setup_veth(sys.argv[at + 1], sys.argv[at + 2], family)
    else:
        guard, edge = None, setup()
    try:
        with PcapWriter(pcap_path) as pcap:
            result = SCENARIOS[name](edge, pcap)
    finally:
        edge.close()
        if guard is not None:
            guard.close()
    print(json.dumps(result, default=str))


if __name__ == "__main__":
    main()
