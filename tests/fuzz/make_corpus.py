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


def npy(descr, shape, data, fortran=False, version=1, text=None):
    """A .npy file: magic, version, header length, the dict (or `text`) padded to 64 bytes, the
    data."""
    tup = "(" + "".join("%d, " % d for d in shape).rstrip(" ") + ")" if len(shape) != 1 \
        else "(%d,)" % shape[0]
    d = text or "{'descr': '%s', 'fortran_order': %s, 'shape': %s, }" % (descr, fortran, tup)
    pre = 10 if version == 1 else 12
    n = pre + len(d) + 1
    d = (d + " " * (-n % 64) + "\n").encode()
    ln = struct.pack("<H", len(d)) if version == 1 else struct.pack("<I", len(d))
    return b"\x93NUMPY" + bytes([version, 0]) + ln + d + data


F8 = b"".join(struct.pack("<d", k + 0.5) for k in range(6))
write("npy", "f8_2x3", npy("<f8", (2, 3), F8))
write("npy", "f8_2x3_fortran", npy("<f8", (2, 3), F8, fortran=True))
write("npy", "i4_1d_v2", npy("<i4", (5,), b"".join(struct.pack("<i", k) for k in range(5)), version=2))
write("npy", "b1_0d", npy("|b1", (), b"\x01"))
write("npy", "u1_3d", npy("|u1", (2, 2, 2), bytes(range(8)), fortran=True))
write("npy", "f4_empty", npy("<f4", (0, 4), b""))
write("npy", "short_data", npy("<i8", (4,), bytes(8)))
write("npy", "bad_descr", npy(">f8", (1,), bytes(8)))
# Read as shape (1,) before the parser went token by token: a key's name inside a value.
write("npy", "decoy_key", npy("", (), bytes(16), text="{'note': \"'shape': (1,)\", 'descr': "
                              "'<f8', 'fortran_order': False, 'shape': (2,), }"))

# spill: byte 0 even = round trip (zstd level, 3-byte offset, xor mask, payload); odd = a file
# (bit 1: the harness seals magic and checksum). A header: magic, size, stored, sum, flags.
write("spill", "plain", b"\x00\x00" + b"\x05\x00\x00\x01" + bytes(range(64)))
write("spill", "zstd", b"\x00\x03" + b"\x30\x00\x00\x40" + b"abcd" * 64)
write("spill", "zstd_nocorrupt", b"\x00\x01" + b"\x00\x00\x00\x00" + b"x" * 200)


def spill_file(size, payload, flags=0):
    return b"DAGSPIL1" + struct.pack("<QQQQ", size, len(payload), 0, flags) + payload


ZFRAME = bytes.fromhex("28b52ffd006855000020616263640100215d22")  # zstd -19 of b"abcd" * 16
write("spill", "file_plain", b"\x03" + spill_file(8, bytes(range(8))))
write("spill", "file_zstd", b"\x03" + spill_file(64, ZFRAME, flags=1))
write("spill", "file_zstd_short", b"\x03" + spill_file(64, ZFRAME[:10], flags=1))
# Found by fuzz_spill: a zstd spill file whose header claims 2^40 stored bytes was allocated.
write("spill", "crash-huge-stored", b"\x03" + b"DAGSPIL1" + struct.pack("<QQQQ", 8, 1 << 40, 0, 1))

# darray: byte 0 even = a whole .npy; odd = index.txt, NUL, the block file.
write("darray", "whole_1d", b"\x00" + npy("<f8", (6,), F8))
write("darray", "whole_fortran", b"\x00" + npy("<f8", (2, 3), F8, fortran=True))
write("darray", "whole_c_order", b"\x00" + npy("<f8", (2, 3), F8))
IDX = b"dagger-darray 1\nelt <f8\ndims (2, 3)\nblocks (2, 3)\n"
write("darray", "blocks", b"\x01" + IDX + b"\x00" + npy("<f8", (2, 3), F8, fortran=True))
write("darray", "blocks_1d", b"\x01" + b"dagger-darray 1\nelt <i4\ndims (3,)\nblocks (3,)\n" +
      b"\x00" + npy("<i4", (3,), bytes(12)))
write("darray", "blocks_bad", b"\x01" + b"dagger-darray 1\nelt <f8\ndims (-1,)\nblocks (1,)\n\x00")

# parse: byte 0 = 0 size, 1 cpu.max, 2 scope; the rest is the text.
for i, t in enumerate(["65536", "512k", "4MiB", "2GB", "1t", "0", "18446744073709551615"]):
    write("parse", "size%d" % i, b"\x00" + t.encode())
for i, t in enumerate(["max 100000\n", "150000 100000\n", "-1"]):
    write("parse", "cpu%d" % i, b"\x01" + t.encode())
# Found by fuzz_parse: "-1" was the size 2^64 - 1; quota + period - 1 overflowed (UBSan).
write("parse", "crash-size-negative", b"\x00-1")
write("parse", "crash-cpu-max-quota", b"\x019223372036854775807 1")
write("parse", "crash-cpu-max-period", b"\x0150000 9223372036854775807")
for i, t in enumerate(["any", "worker=0,thread=1", "workers=[0,1],threads=[2,3]", "gpu=cuda:0",
                       "workers=[1,2],gpu=[opencl:0,fake]", "thread=1048576", "worker=,"]):
    write("parse", "scope%d" % i, b"\x02" + t.encode())
