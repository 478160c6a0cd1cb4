"""The isolated model process: locks itself down with kernel mechanisms, then unpickles and queries a model.

Run only by :mod:`modelcert.sandbox` as ``python -I -B`` on this file (``runpy.run_path``), never imported by
the certifier: it depends on the standard library alone until it is locked down (numpy/joblib are imported
afterwards, through the read-only filesystem view), so nothing of modelcert (database code, configuration)
is loaded into the process that runs untrusted code.

Lockdown, in order; any failure exits before the artifact is read (fail closed):

1. ``PR_SET_PDEATHSIG`` = SIGKILL (and a check that the parent is still the one that started us);
2. rlimits: address space, CPU seconds, file size, open files, no core dumps (RLIMIT_NPROC is *not* used:
   uid 0 is exempt from it in the kernel — INIT_USER — and threads count against it; seccomp blocks forks);
3. every capability dropped (bounding, ambient, effective/permitted/inheritable), so a root child cannot
   raise its rlimits again or use CAP_KILL/CAP_NET_*/CAP_SYS_*;
4. ``PR_SET_NO_NEW_PRIVS``;
5. Landlock (ABI >= 4): reads only below the Python installation and system library folders, reads and
   writes only below the scratch directory, no execve anywhere; no TCP bind/connect; from ABI 6 no signals
   and no abstract unix sockets outside the sandbox; Landlock also refuses ptrace and /proc/<pid>/environ of
   processes outside the sandbox (the certifier's environment);
6. seccomp, through libseccomp (``libseccomp.so.2``, the system library, called with ctypes): ``socket``
   (every family, so no AF_UNIX connection to PostgreSQL's socket either), fork/vfork/clone without
   CLONE_THREAD, execve, ptrace, mount/namespace/bpf/keyring/module/io_uring syscalls refused; clone3 answers
   ENOSYS so glibc falls back to clone, which is filtered by its flags;
7. a self-check: creating a socket must fail.

Protocol: the parent sends length-prefixed pickles (the child trusts its parent); the child answers with
frames ``kind(1) + length(8, big-endian) + body`` where kind is ``J`` (JSON), ``A`` (one array in .npy format,
never object dtype) or ``E`` (JSON ``{"error": ...}``). The parent never unpickles anything from here.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import io
import json
import os
import platform
import resource
import signal
import struct
import sys
from typing import Any

# Landlock (include/uapi/linux/landlock.h); the syscall numbers are the generic ones on x86_64 and aarch64.
SYS_LANDLOCK = {"create_ruleset": 444, "add_rule": 445, "restrict_self": 446}
LANDLOCK_CREATE_RULESET_VERSION = 1
LANDLOCK_RULE_PATH_BENEATH = 1
FS_EXECUTE, FS_WRITE_FILE, FS_READ_FILE, FS_READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
FS_ALL_BY_ABI = {1: (1 << 13) - 1, 2: (1 << 14) - 1, 3: (1 << 15) - 1, 4: (1 << 15) - 1}
FS_ALL_ABI5 = (1 << 16) - 1  # + IOCTL_DEV
FS_FILE_RIGHTS = FS_EXECUTE | FS_WRITE_FILE | FS_READ_FILE | (1 << 14) | (1 << 15)  # + TRUNCATE, IOCTL_DEV
NET_BIND_TCP, NET_CONNECT_TCP = 1 << 0, 1 << 1
SCOPE_ABSTRACT_UNIX_SOCKET, SCOPE_SIGNAL = 1 << 0, 1 << 1
SYS_CAPSET = {"x86_64": 126, "aarch64": 91}
PR_SET_PDEATHSIG, PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS, PR_CAP_AMBIENT = 1, 24, 38, 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
LINUX_CAPABILITY_VERSION_3 = 0x20080522
CLONE_THREAD = 0x00010000

# libseccomp (seccomp.h)
SCMP_ACT_ALLOW = 0x7FFF0000
SCMP_CMP_MASKED_EQ = 7
EPERM, ENOSYS = 1, 38
DENIED_SYSCALLS = (
    "socket", "socketpair", "fork", "vfork", "execve", "execveat", "ptrace", "process_vm_readv",
    "process_vm_writev", "mount", "umount2", "pivot_root", "chroot", "unshare", "setns", "bpf",
    "perf_event_open", "keyctl", "add_key", "request_key", "init_module", "finit_module", "delete_module",
    "kexec_load", "kexec_file_load", "io_uring_setup", "io_uring_enter", "io_uring_register", "userfaultfd",
    "open_by_handle_at", "fanotify_init", "move_mount", "open_tree", "fsopen", "fsmount",
)
#: Read-only system locations a Python process with numpy/scikit-learn needs (those that exist are used).
SYSTEM_READ_PATHS = ("/usr", "/lib", "/lib64", "/lib32", "/etc/ld.so.cache", "/etc/localtime", "/dev/null",
                     "/dev/urandom", "/dev/zero", "/proc/cpuinfo", "/proc/meminfo", "/sys/devices/system/cpu")


class LockdownError(Exception):
    """The kernel could not provide an isolation step: the model must not be loaded."""


def _frame(kind: bytes, body: bytes) -> bytes:
    return kind + struct.pack(">Q", len(body)) + body


def _send(out: Any, kind: bytes, body: bytes) -> None:
    out.write(_frame(kind, body))
    out.flush()


def _send_json(out: Any, obj: dict[str, Any], *, kind: bytes = b"J") -> None:
    _send(out, kind, json.dumps(obj).encode())


def _read_exact(inp: Any, n: int) -> bytes:
    buf = inp.read(n)
    if buf is None or len(buf) != n:
        raise EOFError("the parent closed the pipe")
    return buf


def _receive(inp: Any) -> Any:
    import pickle  # the parent is trusted; only its requests are unpickled here

    (n,) = struct.unpack(">Q", _read_exact(inp, 8))
    return pickle.loads(_read_exact(inp, n))


# ------------------------------------------------------------------------------------------------ lockdown
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _check(rc: int, what: str) -> int:
    if rc < 0:
        err = ctypes.get_errno()
        raise LockdownError(f"{what} failed: {os.strerror(err) if err else rc}")
    return rc


def landlock_abi() -> int:
    """The kernel's Landlock ABI version, 0 when Landlock is absent or disabled."""
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "aarch64"):
        return 0
    libc = _libc()
    libc.syscall.restype = ctypes.c_long
    rc = libc.syscall(ctypes.c_long(SYS_LANDLOCK["create_ruleset"]), None, ctypes.c_size_t(0),
                      ctypes.c_uint32(LANDLOCK_CREATE_RULESET_VERSION))
    return int(rc) if rc > 0 else 0


def _set_rlimits(address_space: int, cpu_seconds: int, file_bytes: int) -> None:
    for res, value in ((resource.RLIMIT_AS, address_space), (resource.RLIMIT_CPU, cpu_seconds),
                       (resource.RLIMIT_FSIZE, file_bytes), (resource.RLIMIT_NOFILE, 256), (resource.RLIMIT_CORE, 0)):
        resource.setrlimit(res, (value, value))


def _drop_capabilities(libc: ctypes.CDLL) -> None:
    libc.prctl.restype = ctypes.c_int
    for cap in range(64):
        rc = libc.prctl(PR_CAPBSET_DROP, ctypes.c_ulong(cap), 0, 0, 0)
        if rc < 0 and ctypes.get_errno() not in (22,):  # EINVAL: no such capability on this kernel
            if os.geteuid() == 0:
                raise LockdownError(f"dropping capability {cap} from the bounding set failed: "
                                    f"{os.strerror(ctypes.get_errno())}")
            break  # an unprivileged child holds none anyway
    libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    header = struct.pack("=Ii", LINUX_CAPABILITY_VERSION_3, 0)
    data = bytes(24)  # two {effective, permitted, inheritable} u32 triples, all zero
    hbuf, dbuf = ctypes.create_string_buffer(header, 8), ctypes.create_string_buffer(data, 24)
    libc.syscall.restype = ctypes.c_long
    _check(libc.syscall(ctypes.c_long(SYS_CAPSET[platform.machine()]), hbuf, dbuf), "capset (drop all capabilities)")


def _landlock(libc: ctypes.CDLL, abi: int, read_paths: list[str], scratch: str) -> None:
    fs_all = FS_ALL_ABI5 if abi >= 5 else FS_ALL_BY_ABI[abi]
    if abi >= 6:
        attr = struct.pack("=QQQ", fs_all, NET_BIND_TCP | NET_CONNECT_TCP, SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL)
    else:
        attr = struct.pack("=QQ", fs_all, NET_BIND_TCP | NET_CONNECT_TCP)
    abuf = ctypes.create_string_buffer(attr, len(attr))
    libc.syscall.restype = ctypes.c_long
    ruleset = _check(libc.syscall(ctypes.c_long(SYS_LANDLOCK["create_ruleset"]), abuf, ctypes.c_size_t(len(attr)),
                                  ctypes.c_uint32(0)), "landlock_create_ruleset")
    try:
        rules = [(p, FS_READ_FILE | FS_READ_DIR) for p in read_paths] + [(scratch, fs_all & ~FS_EXECUTE)]
        for path, access in rules:
            try:
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except OSError:
                continue  # a listed system path this machine does not have
            try:
                if not os.path.isdir(path):
                    access &= FS_FILE_RIGHTS
                rule = ctypes.create_string_buffer(struct.pack("=Qi", access & fs_all, fd), 12)
                _check(libc.syscall(ctypes.c_long(SYS_LANDLOCK["add_rule"]), ctypes.c_int(ruleset),
                                    ctypes.c_int(LANDLOCK_RULE_PATH_BENEATH), rule, ctypes.c_uint32(0)),
                       f"landlock_add_rule({path})")
            finally:
                os.close(fd)
        _check(libc.syscall(ctypes.c_long(SYS_LANDLOCK["restrict_self"]), ctypes.c_int(ruleset), ctypes.c_uint32(0)),
               "landlock_restrict_self")
    finally:
        os.close(ruleset)


class _ArgCmp(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int),
                ("datum_a", ctypes.c_uint64), ("datum_b", ctypes.c_uint64)]


def _seccomp() -> None:
    name = ctypes.util.find_library("seccomp") or "libseccomp.so.2"
    try:
        lib = ctypes.CDLL(name, use_errno=True)
    except OSError as exc:
        raise LockdownError(f"libseccomp is not available ({exc}); install libseccomp2") from None
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint,
                                           ctypes.POINTER(_ArgCmp)]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_load.argtypes = [ctypes.c_void_p]
    lib.seccomp_release.argtypes = [ctypes.c_void_p]
    ctx = lib.seccomp_init(SCMP_ACT_ALLOW)
    if not ctx:
        raise LockdownError("seccomp_init failed")
    deny, nosys = 0x00050000 | EPERM, 0x00050000 | ENOSYS  # SCMP_ACT_ERRNO(x)
    try:
        for sc in DENIED_SYSCALLS:
            nr = lib.seccomp_syscall_resolve_name(sc.encode())
            if nr < 0:
                continue  # not a syscall on this architecture (e.g. fork on aarch64)
            _check(lib.seccomp_rule_add_array(ctx, deny, nr, 0, None), f"seccomp rule for {sc}")
        nr = lib.seccomp_syscall_resolve_name(b"clone")
        no_thread = (_ArgCmp * 1)(_ArgCmp(0, SCMP_CMP_MASKED_EQ, CLONE_THREAD, 0))
        _check(lib.seccomp_rule_add_array(ctx, deny, nr, 1, no_thread), "seccomp rule for clone")
        nr = lib.seccomp_syscall_resolve_name(b"clone3")
        if nr >= 0:
            _check(lib.seccomp_rule_add_array(ctx, nosys, nr, 0, None), "seccomp rule for clone3")
        _check(lib.seccomp_load(ctx), "seccomp_load")
    finally:
        lib.seccomp_release(ctx)


def lock_down(cfg: dict[str, Any]) -> int:
    """Apply every isolation step or raise LockdownError; returns the Landlock ABI used."""
    libc = _libc()
    libc.prctl.restype = ctypes.c_int
    _check(libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "prctl(PR_SET_PDEATHSIG)")
    if os.getppid() != int(cfg["parent_pid"]):
        raise LockdownError("the certifier exited before the model process started")
    abi = landlock_abi()
    if abi < 4:
        raise LockdownError(f"Landlock ABI {abi} (need >= 4 for filesystem and TCP rules)")
    _set_rlimits(int(cfg["address_space"]), int(cfg["cpu_seconds"]), int(cfg["file_bytes"]))
    _drop_capabilities(libc)
    _check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(PR_SET_NO_NEW_PRIVS)")
    _landlock(libc, abi, list(cfg["read_paths"]) + list(SYSTEM_READ_PATHS), str(cfg["scratch"]))
    _seccomp()
    import socket

    for family in (socket.AF_UNIX, socket.AF_INET, socket.AF_INET6):
        try:
            socket.socket(family, socket.SOCK_STREAM).close()
        except OSError:
            continue
        raise LockdownError(f"self-check: a socket of family {family} could still be created")
    return abi


# ------------------------------------------------------------------------------------------------ serving
def _jsonable(value: Any) -> Any:
    value = value.item() if hasattr(value, "item") else value
    return value if isinstance(value, (str, int, float, bool)) else str(value)


def _array_frame(result: Any, method: str) -> bytes:
    import numpy as np

    arr = np.asarray(result)
    if arr.dtype.kind == "O":  # object arrays would need pickle: send numbers or text, never objects
        arr = arr.astype(float) if method == "predict_proba" else arr.astype(str)
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def serve(inp: Any, out: Any) -> None:
    """Load the model the parent sends, then answer calls until the parent says exit or closes the pipe."""
    request = _receive(inp)
    if request.get("op") != "load":
        raise ValueError("the first request must be 'load'")
    import joblib

    model = joblib.load(io.BytesIO(request["data"]))
    del request
    classes = getattr(model, "classes_", None)
    _send_json(out, {
        "type": f"{type(model).__module__}.{type(model).__qualname__}"[:200],
        "has_predict": callable(getattr(model, "predict", None)),
        "has_predict_proba": callable(getattr(model, "predict_proba", None)),
        "classes": None if classes is None else [_jsonable(c) for c in list(classes)[:10001]],
    })
    while True:
        try:
            request = _receive(inp)
        except EOFError:
            return
        if request.get("op") == "exit":
            return
        method = request.get("method")
        try:
            if method not in ("predict", "predict_proba"):
                raise ValueError(f"unknown method {method!r}")
            body = _array_frame(getattr(model, method)(request["X"]), method)
        except Exception as exc:  # noqa: BLE001 - the model's own failure is reported, the process stays up
            _send_json(out, {"error": f"{type(exc).__name__}: {exc}"[:1000]}, kind=b"E")
            continue
        _send(out, b"A", body)


def main() -> int:
    # The protocol gets private copies of fds 0/1; fd 0 becomes /dev/null and fd 1 the captured stderr, so
    # whatever the model reads or prints (even with os.write) cannot corrupt the frames.
    inp, out = os.fdopen(os.dup(0), "rb"), os.fdopen(os.dup(1), "wb")
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)
    try:
        cfg = json.loads(sys.argv[-1])
        abi = lock_down(cfg)
    except Exception as exc:  # noqa: BLE001 - every failure to isolate is reported and ends the process
        _send_json(out, {"error": f"isolation unavailable: {exc}"[:1000], "lockdown": True}, kind=b"E")
        return 3
    _send_json(out, {"ready": True, "landlock_abi": abi})
    try:
        serve(inp, out)
    except Exception as exc:  # noqa: BLE001 - loading untrusted code can raise anything (no traceback: one line)
        try:
            _send_json(out, {"error": f"{type(exc).__name__}: {exc}"[:1000]}, kind=b"E")
        except OSError:
            pass
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
