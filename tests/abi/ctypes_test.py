#!/usr/bin/env python3
"""ctypes_test.py - the ABI is binding-friendly: libfab loaded from Python's
ctypes, with no compiled glue, exchanges messages with a C process.

usage: ctypes_test.py LIBFAB_SO ABI_PEER

Only the standard library.  The struct layouts below are written from fab.h
by hand, as a binding would; the error table is read from fab.h and checked
against fab_strerror()/fab_errname(), so the header and the library cannot
drift apart.  Exit status 0 when every check passed.
"""
import ctypes
import os
import random
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
HEADER = os.path.join(HERE, "..", "..", "fabric", "include", "fab", "fab.h")

c_int, c_uint, c_size_t, c_ssize_t = ctypes.c_int, ctypes.c_uint, ctypes.c_size_t, ctypes.c_ssize_t
c_void_p, c_char_p, c_int64, c_uint32, c_uint64 = (
    ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int64, ctypes.c_uint32, ctypes.c_uint64)
PVOID = ctypes.POINTER(c_void_p)

FAB_CREATE = 0x1
FAB_SEND, FAB_RECV = 0x1, 0x2
FAB_MPMC, FAB_SPSC = 1, 2
SEC = 1_000_000_000


class ChanOpts(ctypes.Structure):
    _fields_ = [("size", c_uint32), ("capacity", c_uint32), ("msg_size", c_uint32),
                ("kind", c_uint32), ("delivery", c_uint32), ("producers", c_uint32),
                ("max_inflight", c_uint32), ("max_deliveries", c_uint32),
                ("dead_letter", c_char_p), ("mode", c_uint32)]


class Stats(ctypes.Structure):
    _fields_ = [(n, c_uint32) for n in (
        "size", "kind", "delivery", "capacity", "msg_size", "producers", "closes", "closed",
        "senders", "receivers", "blocked_senders", "blocked_receivers")] + \
        [(n, c_uint64) for n in ("len", "sent", "received", "futex_waits", "futex_wakes",
                                 "recovered")] + [("resv", c_uint64 * 8)]


class Iov(ctypes.Structure):
    _fields_ = [("base", c_void_p), ("len", c_size_t)]


FAILURES = []


def check(cond, what):
    if cond:
        return
    FAILURES.append(what)
    print("FAIL:", what, flush=True)


def load(path):
    lib = ctypes.CDLL(path)
    sigs = {
        "fab_strerror": (c_char_p, [c_int]),
        "fab_errname": (c_char_p, [c_int]),
        "fab_errmsg": (c_char_p, []),
        "fab_version": (c_char_p, []),
        "fab_fabric_open": (c_int, [c_char_p, c_uint, PVOID]),
        "fab_fabric_close": (None, [c_void_p]),
        "fab_fabric_destroy": (c_int, [c_char_p]),
        "fab_fabric_recover": (c_int, [c_void_p]),
        "fab_chan_create": (c_int, [c_void_p, c_char_p, ctypes.POINTER(ChanOpts), PVOID]),
        "fab_chan_open": (c_int, [c_void_p, c_char_p, c_uint, PVOID]),
        "fab_chan_release": (None, [c_void_p]),
        "fab_chan_close": (c_int, [c_void_p]),
        "fab_chan_destroy": (c_int, [c_void_p, c_char_p]),
        "fab_chan_len": (c_size_t, [c_void_p]),
        "fab_chan_cap": (c_size_t, [c_void_p]),
        "fab_chan_stats": (c_int, [c_void_p, ctypes.POINTER(Stats)]),
        "fab_send": (c_int, [c_void_p, c_void_p, c_size_t, c_void_p]),
        "fab_try_send": (c_int, [c_void_p, c_void_p, c_size_t]),
        "fab_recv": (c_ssize_t, [c_void_p, c_void_p, c_size_t, c_void_p]),
        "fab_try_recv": (c_ssize_t, [c_void_p, c_void_p, c_size_t]),
        "fab_send_batch": (c_int, [c_void_p, ctypes.POINTER(Iov), c_uint, c_void_p]),
        "fab_recv_batch": (c_int, [c_void_p, ctypes.POINTER(Iov), c_uint, c_void_p]),
        "fab_ctx_create": (c_int, [c_void_p, c_char_p, c_void_p, PVOID]),
        "fab_ctx_open": (c_int, [c_void_p, c_char_p, PVOID]),
        "fab_ctx_with_timeout": (c_int, [c_void_p, c_int64, PVOID]),
        "fab_ctx_cancel": (c_int, [c_void_p, c_int]),
        "fab_ctx_err": (c_int, [c_void_p]),
        "fab_ctx_reason": (c_int, [c_void_p]),
        "fab_ctx_release": (None, [c_void_p]),
    }
    for name, (res, args) in sigs.items():
        fn = getattr(lib, name)
        fn.restype = res
        fn.argtypes = args
    return lib


def parse_header():
    text = open(HEADER).read()
    errs = {m.group(1): (int(m.group(2)), m.group(3))
            for m in re.finditer(r'X\((\w+),\s*(-?\d+),\s*"([^"]*)"\)', text)}
    ver = tuple(int(re.search(r"#define FAB_VERSION_%s (\d+)" % k, text).group(1))
                for k in ("MAJOR", "MINOR", "PATCH"))
    return errs, ver


class Fab:
    """A thin wrapper, as a binding would write it."""

    def __init__(self, lib):
        self.lib = lib

    def deadline(self, ns=10 * SEC):
        ctx = c_void_p()
        rc = self.lib.fab_ctx_with_timeout(None, ns, ctypes.byref(ctx))
        check(rc == 0, "fab_ctx_with_timeout: %d" % rc)
        return ctx

    def recv(self, ch, cap):
        buf = ctypes.create_string_buffer(max(cap, 1))
        ctx = self.deadline()
        n = self.lib.fab_recv(ch, buf, cap, ctx)
        self.lib.fab_ctx_release(ctx)
        return n, (buf.raw[:n] if n >= 0 else None)

    def send(self, ch, data):
        ctx = self.deadline()
        rc = self.lib.fab_send(ch, data, len(data), ctx)
        self.lib.fab_ctx_release(ctx)
        return rc

    def stats(self, ch):
        st = Stats()
        st.size = ctypes.sizeof(Stats)
        rc = self.lib.fab_chan_stats(ch, ctypes.byref(st))
        check(rc == 0, "fab_chan_stats: %d" % rc)
        return st

    def create(self, fab, name, kind, cap, msg_size, producers=0):
        o = ChanOpts()
        o.size = ctypes.sizeof(ChanOpts)
        o.capacity, o.msg_size, o.kind, o.producers = cap, msg_size, kind, producers
        ch = c_void_p()
        rc = self.lib.fab_chan_create(fab, name, ctypes.byref(o), ctypes.byref(ch))
        return rc, ch

    def open(self, fab, name, role):
        ch = c_void_p()
        rc = self.lib.fab_chan_open(fab, name, role, ctypes.byref(ch))
        return rc, ch


def main():
    if len(sys.argv) != 3:
        print(__doc__)
        return 2
    libpath, peer = sys.argv[1], sys.argv[2]
    lib = load(libpath)
    f = Fab(lib)
    errs, ver = parse_header()
    E = {name: val for name, (val, _) in errs.items()}

    # Structs as a binding lays them out (x86-64 / LP64 sizes).
    check(ctypes.sizeof(ChanOpts) == 48, "sizeof(fab_chan_opts) = %d" % ctypes.sizeof(ChanOpts))
    check(ctypes.sizeof(Stats) == 160, "sizeof(fab_stats) = %d" % ctypes.sizeof(Stats))

    # The error table: values, names and texts all agree with the header.
    check(len(errs) >= 14, "error table parsed from fab.h: %d entries" % len(errs))
    for name, (val, text) in errs.items():
        got_name = lib.fab_errname(val)
        got_text = lib.fab_strerror(val)
        check(got_name == ("FAB_" + name).encode(), "fab_errname(%d) = %r" % (val, got_name))
        check(got_text == text.encode(), "fab_strerror(%d) = %r, header says %r"
              % (val, got_text, text))
    check(lib.fab_strerror(0) is not None, "fab_strerror(0) returns a string")
    check(lib.fab_strerror(-9999) is not None, "fab_strerror(unknown) returns a string")
    check(E.get("EMSGSIZE") == -5 and E.get("ENOENT") == -7 and E.get("ECLOSED") == -4,
          "documented values of FAB_EMSGSIZE/FAB_ENOENT/FAB_ECLOSED")
    v = lib.fab_version()
    check(v is not None and v.decode().startswith("%d.%d.%d" % ver),
          "fab_version() = %r, header %s" % (v, ver))

    name = ("abi-%d" % os.getpid()).encode()
    lib.fab_fabric_destroy(name)
    fab = c_void_p()
    peer_proc = None
    try:
        check(lib.fab_fabric_open(name, FAB_CREATE, ctypes.byref(fab)) == 0, "fab_fabric_open")
        other = c_void_p()
        rc = lib.fab_fabric_open(b"abi-never-created-%d" % os.getpid(), 0, ctypes.byref(other))
        check(rc == E["ENOENT"], "open of a missing fabric: %d, want FAB_ENOENT" % rc)
        rc = lib.fab_fabric_open(b"bad.name", FAB_CREATE, ctypes.byref(other))
        check(rc == E["EINVAL"], "fabric name with a dot: %d, want FAB_EINVAL" % rc)
        check(lib.fab_errmsg() is None or isinstance(lib.fab_errmsg(), bytes), "fab_errmsg()")

        rc, to_c = f.create(fab, b"to_c", FAB_MPMC, 8, 256)
        check(rc == 0, "create to_c: %d" % rc)
        rc, from_c = f.create(fab, b"from_c", FAB_MPMC, 8, 256)
        check(rc == 0, "create from_c: %d" % rc)
        check(lib.fab_chan_cap(to_c) == 8, "fab_chan_cap")
        rc, dup = f.create(fab, b"to_c", FAB_MPMC, 8, 256)
        check(rc == E["EEXIST"], "duplicate create: %d, want FAB_EEXIST" % rc)
        rc, _ = f.open(fab, b"nope", FAB_RECV)
        check(rc == E["ENOENT"], "open of a missing channel: %d, want FAB_ENOENT" % rc)
        check(lib.fab_errname(rc) == b"FAB_ENOENT", "fab_errname(ENOENT)")
        big = b"\0" * 257
        rc = lib.fab_try_send(to_c, big, len(big))
        check(rc == E["EMSGSIZE"], "oversized try_send: %d, want FAB_EMSGSIZE" % rc)
        check(lib.fab_strerror(rc) == errs["EMSGSIZE"][1].encode(), "strerror(EMSGSIZE)")
        check(lib.fab_try_send(None, b"x", 1) == E["EINVAL"], "NULL handle: FAB_EINVAL")
        check(lib.fab_try_recv(from_c, None, 0) == E["EAGAIN"], "try_recv on empty: FAB_EAGAIN")

        # Round trips through the C echo peer.
        peer_proc = subprocess.Popen([peer, name.decode(), "echo", "to_c", "from_c"])
        rnd = random.Random(1234)
        payloads = [b"", b"x", b"hello, fab", bytes(range(256)), b"\xff" * 255]
        payloads += [bytes(rnd.getrandbits(8) for _ in range(rnd.randrange(257)))
                     for _ in range(200)]
        for i, p in enumerate(payloads):
            rc = f.send(to_c, p)
            check(rc == 0, "send %d: %d" % (i, rc))
            if len(p) > 1 and i % 10 == 0:
                # Too small a buffer: FAB_EMSGSIZE, and the message stays queued.
                ctx = f.deadline()
                small = ctypes.create_string_buffer(len(p) - 1)
                n = lib.fab_recv(from_c, small, len(p) - 1, ctx)
                lib.fab_ctx_release(ctx)
                check(n == E["EMSGSIZE"], "recv into a small buffer: %d" % n)
            n, got = f.recv(from_c, 256)
            check(n == len(p) and got == p, "round trip %d: %d bytes back, %d sent%s"
                  % (i, n, len(p), "" if got == p else " (content differs)"))
        # A batch through ctypes arrays of fab_iov.
        bufs = [ctypes.create_string_buffer(b"batch-%d" % i) for i in range(3)]
        iovs = (Iov * 3)(*[Iov(ctypes.cast(b, c_void_p), len(b.value)) for b in bufs])
        ctx = f.deadline()
        rc = lib.fab_send_batch(to_c, iovs, 3, ctx)
        lib.fab_ctx_release(ctx)
        check(1 <= rc <= 3, "send_batch: %d" % rc)
        sent_batch = rc if rc > 0 else 0
        for i in range(sent_batch):
            n, got = f.recv(from_c, 256)
            check(got == b"batch-%d" % i, "batch echo %d: %r" % (i, got))

        check(lib.fab_chan_close(to_c) == 0, "close to_c")
        check(lib.fab_chan_close(to_c) == E["ECLOSED"], "second close: FAB_ECLOSED")
        n, _ = f.recv(from_c, 256)
        check(n == E["ECLOSED"], "recv after the peer closed: %d, want FAB_ECLOSED" % n)
        check(peer_proc.wait(timeout=30) == 0, "echo peer exit status %s" % peer_proc.returncode)
        total = len(payloads) + sent_batch
        st = f.stats(to_c)
        check(st.sent == total and st.received == total and st.closed == 1 and st.len == 0,
              "to_c stats: sent %d received %d closed %d len %d, want %d/%d/1/0"
              % (st.sent, st.received, st.closed, st.len, total, total))
        check(st.kind == FAB_MPMC and st.capacity == 8 and st.msg_size == 256, "to_c stats header")

        # An spsc channel fed by a C producer.
        rc, prod = f.create(fab, b"prod", FAB_SPSC, 4, 32)
        check(rc == 0, "create prod: %d" % rc)
        lib.fab_chan_release(prod)  # the peer attaches the send end
        rc, prod = f.open(fab, b"prod", FAB_RECV)
        check(rc == 0, "open prod to receive: %d" % rc)
        rc, second = f.open(fab, b"prod", FAB_RECV)
        check(rc == E["EBUSY"], "second spsc receiver: %d, want FAB_EBUSY" % rc)
        peer_proc = subprocess.Popen([peer, name.decode(), "produce", "prod", "100"])
        for i in range(100):
            n, got = f.recv(prod, 32)
            check(got == b"msg-%d" % i, "produced message %d: %r (%d)" % (i, got, n))
        n, _ = f.recv(prod, 32)
        check(n == E["ECLOSED"], "after the producer closed: %d" % n)
        check(peer_proc.wait(timeout=30) == 0, "producer peer exit %s" % peer_proc.returncode)

        # Contexts through ctypes.
        ctx = c_void_p()
        check(lib.fab_ctx_create(fab, b"abictx", None, ctypes.byref(ctx)) == 0, "ctx_create")
        check(lib.fab_ctx_err(ctx) == 0, "fresh ctx_err")
        check(lib.fab_ctx_cancel(ctx, 5) == 0, "ctx_cancel")
        check(lib.fab_ctx_err(ctx) == E["ECANCELED"], "ctx_err after cancel")
        check(lib.fab_ctx_reason(ctx) == 5, "ctx_reason")
        rc, empty = f.create(fab, b"empty", FAB_MPMC, 2, 16)
        check(rc == 0, "create empty: %d" % rc)
        buf = ctypes.create_string_buffer(16)
        n = lib.fab_recv(empty, buf, 16, ctx)
        check(n == E["ECANCELED"], "recv under a cancelled ctx: %d, want FAB_ECANCELED" % n)
        lib.fab_ctx_release(ctx)
        lib.fab_chan_release(empty)
        check(lib.fab_fabric_recover(fab) >= 0, "fab_fabric_recover")

        for ch in (to_c, from_c, prod):
            lib.fab_chan_release(ch)
        check(lib.fab_chan_destroy(fab, b"prod") == 0, "fab_chan_destroy")
        lib.fab_fabric_close(fab)
        fab = None
        check(lib.fab_fabric_destroy(name) == 0, "fab_fabric_destroy")
        left = [e for e in os.listdir("/dev/shm") if e == "fab." + name.decode()
                or e.startswith("fab." + name.decode() + ".")]
        check(not left, "segments left after destroy: %s" % left)
    finally:
        if peer_proc is not None and peer_proc.poll() is None:
            peer_proc.kill()
            peer_proc.wait()
        if fab:
            lib.fab_fabric_close(fab)
        lib.fab_fabric_destroy(name)

    if FAILURES:
        print("%d check(s) failed" % len(FAILURES))
        return 1
    print("ctypes ABI test: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
