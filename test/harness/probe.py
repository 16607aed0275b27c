#!/usr/bin/env python3
"""Socket probe for the l3iso integration tests.

Usage: probe.py JSON
  JSON is a list of operations, or {"ops": [...], "keep_going": true}.

Each operation prints exactly one JSON line (servers print one line per event
as well):
  {"i": 0, "op": "bind", "ok": true, "addr": "192.0.2.1", "port": 40000}
  {"i": 1, "op": "connect", "ok": false, "errno": "ECONNREFUSED"}
Execution stops at the first failed operation unless keep_going is set.

Sockets are named by "id" (default "s"). Families: 4, 6, "packet".
Types: "tcp", "udp", "raw", "icmp", "ipraw" (SOCK_RAW/IPPROTO_RAW: the
caller writes the IP header, see send_forged); "stream", "dgram" and
"seqpacket" take any protocol number in "proto" (MPTCP 262, UDP-Lite 136). Every blocking call has a
timeout ("timeout", seconds, default 5).
"""

import errno
import json
import socket
import struct
import sys
import time

IP_PKTINFO = 8  # <linux/in.h>; the socket module does not export it
IPV6_PKTINFO = 50  # <linux/in6.h>
ETH_P_ALL = 0x0003

socks = {}
SOCK_TYPES = {"stream": socket.SOCK_STREAM, "dgram": socket.SOCK_DGRAM, "seqpacket": socket.SOCK_SEQPACKET}


def out(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def errname(exc):
    if isinstance(exc, (socket.timeout, TimeoutError)) and not exc.errno:
        return "ETIMEDOUT"
    if getattr(exc, "errno", None):
        return errno.errorcode.get(exc.errno, str(exc.errno))
    return type(exc).__name__


def fam_of(op):
    fam = op.get("fam", 4)
    if fam in (4, "4", "inet"):
        return socket.AF_INET
    if fam in (6, "6", "inet6"):
        return socket.AF_INET6
    if fam == "packet":
        return socket.AF_PACKET
    raise ValueError("bad fam %r" % (fam,))


def sockaddr(sock, addr, port):
    if sock.family == socket.AF_INET6:
        return (addr, port, 0, 0)
    return (addr, port)


def fmt(sa):
    if isinstance(sa, tuple) and len(sa) >= 2:
        return {"addr": sa[0], "port": sa[1]}
    return {"addr": str(sa)}


def timeout_of(op):
    return float(op.get("timeout", 5))


def new_socket(op):
    fam = fam_of(op)
    typ = op.get("type", "tcp")
    if fam == socket.AF_PACKET:
        st = socket.SOCK_DGRAM if typ == "dgram" else socket.SOCK_RAW
        return socket.socket(fam, st, socket.htons(ETH_P_ALL))
    if typ == "tcp":
        s = socket.socket(fam, socket.SOCK_STREAM)
    elif typ == "udp":
        s = socket.socket(fam, socket.SOCK_DGRAM)
    elif typ == "raw":
        proto = socket.IPPROTO_ICMP if fam == socket.AF_INET else socket.IPPROTO_ICMPV6
        s = socket.socket(fam, socket.SOCK_RAW, proto)
    elif typ == "ipraw":
        s = socket.socket(fam, socket.SOCK_RAW, socket.IPPROTO_RAW)
        if fam == socket.AF_INET:
            s.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)
        # AF_INET6 + IPPROTO_RAW implies IPV6_HDRINCL
    elif typ == "icmp":
        proto = socket.IPPROTO_ICMP if fam == socket.AF_INET else socket.IPPROTO_ICMPV6
        s = socket.socket(fam, socket.SOCK_DGRAM, proto)
    elif typ in SOCK_TYPES:
        s = socket.socket(fam, SOCK_TYPES[typ], int(op.get("proto", 0)))
    else:
        raise ValueError("bad type %r" % (typ,))
    if fam == socket.AF_INET6 and "v6only" in op:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1 if op["v6only"] else 0)
    if op.get("reuse"):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    return s


def get(op):
    return socks[op.get("id", "s")]


def recv_all(conn, timeout):
    conn.settimeout(timeout)
    chunks = []
    while True:
        data = conn.recv(65536)
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks).decode(errors="replace")


def send_src(sock, data, dst, src):
    """sendto with an explicit source address (IP_PKTINFO / IPV6_PKTINFO)."""
    if src is None:
        return sock.sendto(data, dst)
    if sock.family == socket.AF_INET:
        info = struct.pack("=i4s4s", 0, socket.inet_aton(src), b"\0" * 4)
        anc = [(socket.IPPROTO_IP, IP_PKTINFO, info)]
    else:
        info = struct.pack("=16si", socket.inet_pton(socket.AF_INET6, src), 0)
        anc = [(socket.IPPROTO_IPV6, IPV6_PKTINFO, info)]
    return sock.sendmsg([data], anc, 0, dst)


def op_socket(op):
    socks[op.get("id", "s")] = new_socket(op)
    return {}


def op_bind(op):
    s = get(op)
    s.bind(sockaddr(s, op.get("addr", ""), int(op.get("port", 0))))
    return fmt(s.getsockname())


def op_bind_new(op):
    """socket + bind + getsockname + close: one self-contained bind attempt."""
    s = new_socket(op)
    try:
        s.bind(sockaddr(s, op.get("addr", ""), int(op.get("port", 0))))
        return fmt(s.getsockname())
    finally:
        s.close()


def op_listen(op):
    get(op).listen(int(op.get("backlog", 64)))
    return {}


def op_connect(op):
    s = get(op)
    s.settimeout(timeout_of(op))
    s.connect(sockaddr(s, op["addr"], int(op["port"])))
    return {"local": fmt(s.getsockname()), "peer": fmt(s.getpeername())}


def op_getsockname(op):
    return fmt(get(op).getsockname())


def op_getpeername(op):
    return fmt(get(op).getpeername())


def op_accept(op):
    s = get(op)
    s.settimeout(timeout_of(op))
    conn, peer = s.accept()
    res = {"peer": fmt(peer), "getpeername": fmt(conn.getpeername()), "local": fmt(conn.getsockname())}
    if "send" in op:
        conn.sendall(op["send"].encode())
    if op.get("as"):
        socks[op["as"]] = conn
    else:
        conn.close()
    return res


def payload_of(op, default=""):
    """op["data"] as bytes, or op["size"] bytes of "x" when size is given."""
    if "size" in op:
        return b"x" * int(op["size"])
    return op.get("data", default).encode()


def op_send(op):
    data = payload_of(op)
    get(op).sendall(data)
    return {"sent": len(data)}


def op_shutdown(op):
    get(op).shutdown(socket.SHUT_WR)
    return {}


def op_recv(op):
    data = recv_all(get(op), timeout_of(op))
    if op.get("quiet"):
        return {"len": len(data)}
    return {"data": data}


def op_sendto(op):
    s = get(op)
    n = send_src(s, payload_of(op, "x"), sockaddr(s, op["addr"], int(op["port"])), op.get("src"))
    return {"sent": n}


def op_recvfrom(op):
    s = get(op)
    s.settimeout(timeout_of(op))
    data, peer = s.recvfrom(65536)
    res = fmt(peer)
    res["data"] = data.decode(errors="replace")
    return res


def csum16(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def forged_udp(fam, src, dst, sport, dport, payload):
    """A complete IPv4 or IPv6 packet carrying one UDP datagram."""
    ulen = 8 + len(payload)
    if fam == socket.AF_INET:
        s4, d4 = socket.inet_aton(src), socket.inet_aton(dst)
        pseudo = s4 + d4 + struct.pack("!BBH", 0, socket.IPPROTO_UDP, ulen)
        udp = struct.pack("!HHHH", sport, dport, ulen, 0) + payload
        ck = csum16(pseudo + udp) or 0xFFFF
        udp = struct.pack("!HHHH", sport, dport, ulen, ck) + payload
        hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + ulen, 0, 0x4000, 64, socket.IPPROTO_UDP, 0, s4, d4)
        hdr = hdr[:10] + struct.pack("!H", csum16(hdr)) + hdr[12:]
        return hdr + udp
    s6 = socket.inet_pton(socket.AF_INET6, src)
    d6 = socket.inet_pton(socket.AF_INET6, dst)
    pseudo = s6 + d6 + struct.pack("!I3xB", ulen, socket.IPPROTO_UDP)
    udp = struct.pack("!HHHH", sport, dport, ulen, 0) + payload
    ck = csum16(pseudo + udp) or 0xFFFF
    udp = struct.pack("!HHHH", sport, dport, ulen, ck) + payload
    hdr = struct.pack("!IHBB16s16s", 6 << 28, ulen, socket.IPPROTO_UDP, 64, s6, d6)
    return hdr + udp


def op_send_forged(op):
    """On an "ipraw" socket: send a hand-built UDP packet whose IP source is
    op["src"] (whatever the socket is bound to), to op["dst"]:op["dport"]."""
    s = get(op)
    pkt = forged_udp(s.family, op["src"], op["dst"], int(op.get("sport", 9999)), int(op["dport"]),
                     payload_of(op, "forged"))
    n = s.sendto(pkt, sockaddr(s, op["dst"], 0))
    return {"sent": n}


def op_echo(op):
    """One ICMP/ICMPv6 echo request, sent on a ping ("icmp") socket to op["addr"]."""
    s = get(op)
    v6 = s.family == socket.AF_INET6
    body = struct.pack("!BBHHH", 128 if v6 else 8, 0, 0, 0x1234, 1) + b"l3iso-echo"
    if not v6:  # the kernel fills in the ICMPv6 checksum, not the ICMP one
        body = body[:2] + struct.pack("!H", csum16(body)) + body[4:]
    return {"sent": s.sendto(body, sockaddr(s, op["addr"], 0))}


def op_packet_send(op):
    """AF_PACKET (SOCK_RAW) send of one hand-built Ethernet + IPv4/IPv6 + UDP
    frame on interface op["iface"]: source op["src"] (forged or not),
    destination op["dst"]:op["dport"], Ethernet destination op["dst_mac"]
    ("aa:bb:..."), source MAC the interface's own unless op["src_mac"].
    Needs CAP_NET_RAW. Reports the frame length written."""
    fam = socket.AF_INET6 if ":" in op["dst"] else socket.AF_INET
    pkt = forged_udp(fam, op["src"], op["dst"], int(op.get("sport", 9999)), int(op["dport"]),
                     payload_of(op, "forged"))
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    try:
        s.bind((op["iface"], 0))
        own_mac = s.getsockname()[4]
        src_mac = bytes.fromhex(op["src_mac"].replace(":", "")) if "src_mac" in op else own_mac
        dst_mac = bytes.fromhex(op["dst_mac"].replace(":", ""))
        ethertype = 0x86DD if fam == socket.AF_INET6 else 0x0800
        frame = dst_mac + src_mac + struct.pack("!H", ethertype) + pkt
        n = s.send(frame)
        return {"sent": n, "frame_len": len(frame), "src_mac": own_mac.hex()}
    finally:
        s.close()


def op_close(op):
    socks.pop(op.get("id", "s")).close()
    return {}


def op_fetch(op):
    """TCP client: connect, read until EOF; reports local/peer names and data."""
    s = new_socket(op)
    try:
        s.settimeout(timeout_of(op))
        s.connect(sockaddr(s, op["addr"], int(op["port"])))
        res = {"local": fmt(s.getsockname()), "peer": fmt(s.getpeername())}
        res["data"] = recv_all(s, timeout_of(op))
        return res
    finally:
        s.close()


def op_serve_banner(op, i):
    """TCP server on a listening socket: answer each connection with a banner.

    Prints {"ready": true, ...} once listening, then one {"event": "conn"}
    line per connection. count 0 (default) serves until killed."""
    s = get(op)
    count = int(op.get("count", 0))
    out({"i": i, "op": "serve_banner", "ok": True, "ready": True, **fmt(s.getsockname())})
    s.settimeout(None)
    n = 0
    while count == 0 or n < count:
        conn, peer = s.accept()
        ev = {"event": "conn", "peer": fmt(peer), "local": fmt(conn.getsockname())}
        try:
            conn.sendall(op.get("banner", "hello").encode())
        except OSError as exc:
            ev["send_errno"] = errname(exc)
        conn.close()
        out(ev)
        n += 1
    return {"served": n}


# Linux <linux/in.h>; the socket module lacks it on some builds.
IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)


def recv_pktinfo(s):
    """recvmsg with IP_PKTINFO / IPV6_PKTINFO: data, peer, the local address
    the datagram was sent to and the cmsg that replies from it."""
    data, anc, _flags, peer = s.recvmsg(65536, socket.CMSG_SPACE(20))
    for level, kind, raw in anc:
        if level == socket.IPPROTO_IP and kind == IP_PKTINFO:
            _ifindex, _spec, dst = struct.unpack("i4s4s", raw[:12])
            reply = (level, kind, struct.pack("i4s4s", 0, dst, b"\0" * 4))
            return data, peer, socket.inet_ntop(socket.AF_INET, dst), reply
        if level == socket.IPPROTO_IPV6 and kind == socket.IPV6_PKTINFO:
            dst = raw[:16]
            reply = (level, kind, dst + struct.pack("I", 0))
            return data, peer, socket.inet_ntop(socket.AF_INET6, dst), reply
    return data, peer, None, None


def op_serve_echo(op, i):
    """UDP echo server: prints ready, then one event line per datagram.
    With pktinfo, each reply leaves from the address its datagram was sent
    to (IP_PKTINFO / IPV6_RECVPKTINFO), as DNS servers do."""
    s = get(op)
    count = int(op.get("count", 0))
    pktinfo = bool(op.get("pktinfo"))
    if pktinfo:
        if s.family == socket.AF_INET:
            s.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
        else:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
    out({"i": i, "op": "serve_echo", "ok": True, "ready": True, **fmt(s.getsockname())})
    s.settimeout(None)
    n = 0
    while count == 0 or n < count:
        if pktinfo:
            data, peer, dst, reply = recv_pktinfo(s)
        else:
            data, peer = s.recvfrom(65536)
            dst, reply = None, None
        ev = {"event": "dgram", "peer": fmt(peer), "data": data.decode(errors="replace")}
        if dst:
            ev["dst"] = dst
        try:
            if reply:
                s.sendmsg([data], [reply], 0, peer)
            else:
                s.sendto(data, peer)
        except OSError as exc:
            ev["send_errno"] = errname(exc)
        out(ev)
        n += 1
    return {"served": n}


def op_caps(_op):
    res = {}
    with open("/proc/self/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
                res[k] = v.strip()
    return res


def op_cgroup(_op):
    with open("/proc/self/cgroup") as f:
        for line in f:
            if line.startswith("0::"):
                return {"cgroup": line[3:].strip()}
    return {"cgroup": None}


def op_sleep(op):
    time.sleep(float(op.get("s", 0.1)))
    return {}


def op_wait_stdin(_op):
    """Block until stdin is closed (lets a test keep sockets open)."""
    sys.stdin.read()
    return {}


OPS = {
    "socket": op_socket,
    "bind": op_bind,
    "bind_new": op_bind_new,
    "listen": op_listen,
    "connect": op_connect,
    "getsockname": op_getsockname,
    "getpeername": op_getpeername,
    "accept": op_accept,
    "send": op_send,
    "shutdown": op_shutdown,
    "recv": op_recv,
    "sendto": op_sendto,
    "recvfrom": op_recvfrom,
    "close": op_close,
    "send_forged": op_send_forged,
    "echo": op_echo,
    "packet_send": op_packet_send,
    "fetch": op_fetch,
    "caps": op_caps,
    "cgroup": op_cgroup,
    "sleep": op_sleep,
    "wait_stdin": op_wait_stdin,
}
SERVERS = {"serve_banner": op_serve_banner, "serve_echo": op_serve_echo}


def main():
    spec = json.loads(sys.argv[1])
    if isinstance(spec, list):
        spec = {"ops": spec}
    keep_going = bool(spec.get("keep_going"))
    for i, op in enumerate(spec["ops"]):
        name = op["op"]
        try:
            if name in SERVERS:
                res = SERVERS[name](op, i)
            else:
                res = OPS[name](op)
            out({"i": i, "op": name, "ok": True, **res})
        except KeyError as exc:
            out({"i": i, "op": name, "ok": False, "errno": "EPROBE", "message": "missing %s" % exc})
            return 3
        except (OSError, ValueError) as exc:
            out({"i": i, "op": name, "ok": False, "errno": errname(exc), "message": str(exc)})
            if not keep_going:
                return 1
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
    finally:
        sys.stdout.flush()
