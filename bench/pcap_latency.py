#!/usr/bin/env python3
"""Per-exchange DHCP latency from a pcap: DISCOVER->OFFER and REQUEST->ACK, paired by
(xid, chaddr). Prints: do_median_ms do_p99_ms ra_median_ms ra_p99_ms pairs_do pairs_ra."""
import struct, sys

def packets(path):
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 24:
        return
    magic = data[:4]
    endian = "<" if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    nano = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    at = 24
    while at + 16 <= len(data):
        sec, frac, incl, _ = struct.unpack(endian + "IIII", data[at:at + 16])
        frame = data[at + 16:at + 16 + incl]
        at += 16 + incl
        yield sec + frac / (1e9 if nano else 1e6), frame

def dhcp(frame):
    if len(frame) < 14 + 20 + 8 + 240 or frame[12:14] != b"\x08\x00":
        return None
    ihl = (frame[14] & 0x0F) * 4
    p = frame[14 + ihl + 8:]
    if len(p) < 240 or p[236:240] != b"\x63\x82\x53\x63":
        return None
    xid = p[4:8]
    mac = p[28:34]
    i = 240
    while i < len(p):
        code = p[i]
        if code == 0:
            i += 1
            continue
        if code == 255 or i + 1 >= len(p):
            break
        length = p[i + 1]
        if code == 53 and length == 1:
            return xid + mac, p[i + 2]
        i += 2 + length
    return None

def pct(values, q):
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))] * 1000

sent = {}
lat = {"do": [], "ra": []}
for ts, frame in packets(sys.argv[1]):
    parsed = dhcp(frame)
    if not parsed:
        continue
    key, kind = parsed
    if kind in (1, 3):  # DISCOVER, REQUEST
        sent[(key, kind)] = ts
    elif kind == 2 and (key, 1) in sent:  # OFFER
        lat["do"].append(ts - sent.pop((key, 1)))
    elif kind == 5 and (key, 3) in sent:  # ACK
        lat["ra"].append(ts - sent.pop((key, 3)))
print("%.3f %.3f %.3f %.3f %d %d" % (pct(lat["do"], 0.5), pct(lat["do"], 0.99),
      pct(lat["ra"], 0.5), pct(lat["ra"], 0.99), len(lat["do"]), len(lat["ra"])))
