#!/usr/bin/env python3
# tests/fuzz/make_corpus.py - write the seed corpora of the fuzz harnesses (tests/fuzz/corpus/).
#
# Run once after a format changes: python3 tests/fuzz/make_corpus.py. The seeds are valid inputs
# (and a few near misses) that take each harness past its first checks; libFuzzer mutates them.
# Crash inputs found later are added by hand under corpus/<harness>/crash-*.
# SPDX-License-Identifier: MIT
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def value(kind, payload=b"", length=None):
    n = len(payload) if length is None else length
    return struct.pack("<BBHI", kind, 0, 0, n) + payload


def i64(x):
    return value(2, struct.pack("<q", x), 0)


def frame(kind, payload=b"", seq=0, flags=0, count=0):
    return struct.pack("<IBBHIIQ", 0x4E474144, 3, kind, flags, len(payload), count, seq) + payload


def record(payload, raw=False):
    """A record of a BATCH frame: u32 (length | 0x80000000 for raw bytes), bytes, zeros to 4."""
    rec = struct.pack("<I", len(payload) | (0x80000000 if raw else 0)) + payload
    return rec + bytes(-len(rec) % 4)


def batch(values, seq=0):
    """values: (payload, raw) pairs; a BATCH frame (kind 6) holding them."""
    return frame(6, b"".join(record(p, r) for p, r in values), seq, count=len(values))


def packed(values, seq=0):
    """values: blobs of one size; a PACKED frame (kind 7) holding them back to back."""
    return frame(7, b"".join(values), seq, count=len(values))


EIGHT = [struct.pack("<q", k) for k in range(5)]


def hello(secret=0, enc=0, role=1, listener=0, seq=0):
    body = struct.pack("<IBBBBQ", 2, role, secret, enc, listener, seq) + bytes(range(32))
    return frame(4, body)


def write(harness, name, data):
    d = os.path.join(HERE, "corpus", harness)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


VALUES = [value(0), value(1, b"\x01"), i64(-7), value(3, struct.pack("<d", 2.5)),
          value(4, b"hello\x00", 5), value(5, b"\x00\x01\x02\x03"),
          value(7, struct.pack("<QI", 42, 0))]
for i, v in enumerate(VALUES):
    write("value", "v%d" % i, v)
write("value", "all", b"".join(VALUES))

data = [frame(1, i64(5), 0), frame(1, b"raw bytes", 1, flags=1), frame(2, b"", 2)]
write("frame", "stream", b"\x01" + b"".join(data))
write("frame", "small_limit", b"\x00" + frame(1, b"x" * 100))
SMALL = [(struct.pack("<q", 1), True), (i64(2), False), (b"", True), (b"abcde", True)]
write("frame", "batch", b"\x01" + batch(SMALL, 0) + frame(1, i64(4), 4) + frame(2, b"", 5))
write("frame", "batch_short", b"\x00" + frame(6, record(b"x" * 10, True), 0, count=2))
write("frame", "packed", b"\x00" + packed(EIGHT, 0) + batch(SMALL, 5) + packed([b"ab"] * 3, 9))
write("frame", "packed_uneven", b"\x00" + frame(7, b"x" * 10, 0, count=3))

for i, u in enumerate(["tcp://127.0.0.1:9000?role=listen&secret=s&max=1k",
                       "shm:/ring?dir=/tmp&cap=65536&spin=10",
                       "udp://[::1]:7?secret_env=HOME&idle_ms=0x10",
                       "tcp://host:1?secret=a%20b&batch=64k&linger_us=5",
                       "x:", "tcp://:0"]):
    write("uri", "u%d" % i, u.encode())

body = [frame(1, i64(k), k) for k in range(3)] + [frame(2, b"", 3)]
write("tcp", "plain", b"\x00" + hello() + b"".join(body))
write("tcp", "secret", b"\x01" + hello(secret=1) + frame(5, bytes(32)))
write("tcp", "encrypted", b"\x02" + hello(secret=1, enc=1) + frame(5, bytes(32)))
write("tcp", "small_max", b"\x03" + hello() + frame(1, value(5, b"y" * 100), 0))
write("tcp", "batch", b"\x00" + hello() + batch(SMALL, 0) + batch(SMALL, 4) + frame(2, b"", 8))
write("tcp", "packed", b"\x00" + hello() + packed(EIGHT, 0) + batch(SMALL, 5) + frame(2, b"", 9))

MARK = b"\xff\xfe\xfd"
write("udp", "stream", MARK.join([frame(1, i64(1), 0), frame(1, i64(2), 1), frame(2, b"", 2)]))
write("udp", "tagged", frame(1, i64(1), 0, flags=2) + bytes(24))


def pad8(b):
    return b + bytes(-len(b) % 8)


write("shm", "stream", b"".join(pad8(frame(1, i64(k), k)) for k in range(3)) + pad8(frame(2, b"", 3)))
write("shm", "pad", pad8(frame(3, bytes(16))) + pad8(frame(1, i64(0), 0)))
write("shm", "batch", pad8(batch(SMALL, 0)) + pad8(frame(1, i64(4), 4)) + pad8(batch(SMALL, 5)))
write("shm", "packed", pad8(packed(EIGHT, 0)) + pad8(packed([b"abc"] * 3, 5)) + pad8(frame(2, b"", 8)))


def dtrace(events, strings, t0=1000, t1=100000, nthreads=2):
    h = b"DAGTRACE" + struct.pack("<IiqqQQQ", 1, nthreads, t0, t1, 0, len(strings), len(events))
    s = b"".join(struct.pack("<I", len(x)) + x for x in strings)
    e = b"".join(struct.pack("<qQQihBB", *ev) for ev in events)
    return h + s + e


# (ts, id, arg, aux, thread, kind, flags): SPAWN 1, EDGE 2, READY 3, START 4, FINISH 7
EV = [(1000, 1, 0, 0, -1, 1, 1), (1100, 2, 0, 0, -1, 1, 1), (1200, 1, 2, 0, -1, 2, 0),
      (1300, 1, 0, 0, -1, 3, 0), (1400, 1, 0, 0, 0, 4, 0), (5000, 1, 0, 0, 0, 7, 0),
      (5100, 2, 0, 0, 1, 3, 0), (5200, 2, 0, 0, 1, 4, 0), (9000, 2, 0, -4001, 1, 7, 0),
      (9100, 2, 1, 0, 1, 8, 1), (9500, 0, 0, 0, 1, 10, 0), (9900, 0, 0, 0, 1, 11, 0)]
write("dtrace", "small", dtrace(EV, [b"f", b"it failed"]))
write("dtrace", "empty", dtrace([], []))
