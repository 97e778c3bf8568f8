"""Seal a notebook's process before it starts: its work area, no user namespaces, its own user; then run it.

    python -I -S _seal.py SPEC -- COMMAND...

The first program of every sandbox (`mha.course.sandbox`), run before any of the notebook's code. SPEC is JSON:

- "mount": [[path, bytes, files, mode], ...]: a fresh memory file system (tmpfs) on each path, of at most `bytes`
  bytes and `files` files and folders, in a mount namespace of this process's own (root only: isolation `uid`).
  The regular files the first path holds are copied into its new file system first (the notebook's copy).
- "reach": [path, ...]: folders the user must read (Python, its environment, the course), with "mount" only. One that
  a folder above it hides from other users (as /root hides a Python installed in root's home) or that a new file
  system covers (/tmp) is put back in its place, read-only, in an otherwise empty folder: what hid it stays hidden.
- "remount": [[path, bytes, files], ...]: caps on file systems that already exist (root inside bubblewrap, which
  can set their size but not their number of files).
- "uid": the unprivileged user to become (root only), after the above; None: stay who we are.

Then it forbids user namespaces for good (a seccomp filter: `clone` and `unshare` with CLONE_NEWUSER fail with
EPERM, `clone3` says it does not exist so that the C library falls back to `clone`, and system calls of another
ABI fail), because a user namespace gives full capabilities inside it (and a private file system past the caps).
Standard library only, so that it starts in milliseconds; it never imports the course.
"""

import ctypes
import json
import os
import platform
import struct
import sys

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
MS_RDONLY, MS_REMOUNT, MS_NOSUID, MS_NODEV, MS_BIND, MS_REC, MS_PRIVATE = 1, 32, 2, 4, 4096, 1 << 14, 1 << 18
# open_tree and move_mount (Linux 5.2): the same numbers on every machine of ARCHES
OPEN_TREE, MOVE_MOUNT = 428, 429
OPEN_TREE_CLONE, OPEN_TREE_CLOEXEC, AT_RECURSIVE, AT_FDCWD, MOVE_MOUNT_F_EMPTY_PATH = 1, 0o2000000, 0x8000, -100, 4
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 1, 38, 22, 2
# machine: (audit arch, clone, unshare, clone3, x32 system calls exist)
ARCHES = {
    "x86_64": (0xC000003E, 56, 272, 435, True),
    "aarch64": (0xC00000B7, 220, 97, 435, False),
}

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"{what}: {os.strerror(error)}")


def _mount(source, target: str, kind, flags: int, options) -> None:
    encode = lambda text: None if text is None else text.encode()  # noqa: E731
    result = _libc.mount(encode(source), target.encode(), encode(kind), flags, encode(options))
    _check(result, f"mount {kind or ''} on {target}")


def _tmpfs_options(size: int, files: int, mode: int | None = None, uid: int | None = None) -> str:
    options = f"size={int(size)},nr_inodes={int(files)}"
    if mode is not None:
        options += f",mode={mode:o}"
    if uid is not None:
        options += f",uid={uid},gid={uid}"
    return options


def mount_area(mounts: list, uid: int | None, reach: list[str] = ()) -> None:
    """Fresh tmpfs file systems, in a mount namespace of our own that nothing else sees. The first is the work
    folder: its regular files (the notebook's copy) are kept, and it is mounted last, so that it may lie inside
    another (the grader's folder in /tmp). The folders of `reach` stay readable (see the module's docstring)."""
    _check(_libc.unshare(CLONE_NEWNS), "unshare a mount namespace")
    _mount(None, "/", None, MS_REC | MS_PRIVATE, None)  # nothing we mount reaches the machine's namespace
    work, size, files, mode = mounts[0]
    kept = {}
    for entry in os.scandir(work):
        if entry.is_file(follow_symlinks=False):
            with open(entry.path, "rb") as f:
                kept[entry.name] = f.read()
    detached = _detach_hidden(reach, [m[0] for m in mounts[1:]])
    for path, scratch_size, scratch_files, scratch_mode in mounts[1:]:
        options = _tmpfs_options(scratch_size, scratch_files, scratch_mode)
        os.makedirs(path, exist_ok=True)  # a folder that hid the course may have covered it
        _mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV, options)
    for path, fd in detached:
        os.makedirs(path, 0o755, exist_ok=True)
        _check(_libc.syscall(MOVE_MOUNT, fd, b"", AT_FDCWD, path.encode(), MOVE_MOUNT_F_EMPTY_PATH), f"put {path} back")
        os.close(fd)
        _mount(None, path, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV, None)
    os.makedirs(work, exist_ok=True)
    _mount("tmpfs", work, "tmpfs", MS_NOSUID | MS_NODEV, _tmpfs_options(size, files, mode, uid))
    for name, data in kept.items():
        target = os.path.join(work, name)
        with open(target, "wb") as f:
            f.write(data)
        if uid is not None:
            os.chown(target, uid, uid)
    os.chdir(work)  # the working folder, seen through its new file system


def _detach_hidden(reach: list[str], covered: list[str]) -> list[tuple[str, int]]:
    """A detached copy of each folder of `reach` that other users cannot get to (a folder above it not searchable by
    them) or that a folder of `covered` will cover; each folder above that hides one is covered by an empty file
    system, searchable and read-only, into which the copy is put back."""
    inside = lambda path, top: path == top or path.startswith(top.rstrip("/") + "/")  # noqa: E731
    detached, hiding = [], set()
    for path in reach:
        above = [os.path.dirname(path)]
        while above[-1] != "/":
            above.append(os.path.dirname(above[-1]))
        closed = [a for a in reversed(above) if a != "/" and not os.stat(a).st_mode & 0o001]
        if not closed and not any(inside(path, top) for top in covered):
            continue
        fd = _libc.syscall(OPEN_TREE, AT_FDCWD, path.encode(), OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE)
        _check(0 if fd >= 0 else -1, f"copy the mount of {path}")
        detached.append((path, fd))
        if closed:
            hiding.add(closed[0])
    for top in sorted(hiding):
        if not any(top != other and inside(top, other) for other in hiding | set(covered)):
            _mount("tmpfs", top, "tmpfs", MS_NOSUID | MS_NODEV, _tmpfs_options(1 << 20, 4096, 0o755))
    return detached


def remount_area(remounts: list) -> None:
    """Caps on the number of files of file systems that bubblewrap made (it sets their size only)."""
    for path, size, files in remounts:
        _mount(None, path, None, MS_REMOUNT | MS_NOSUID | MS_NODEV, _tmpfs_options(size, files))


def seccomp_program(machine: str | None = None) -> bytes:
    """A classic BPF program for seccomp that refuses new user namespaces (see the module's docstring)."""
    audit, clone, unshare, clone3, x32 = ARCHES[machine or platform.machine()]
    load, jeq, jge, jset, ret = 0x20, 0x15, 0x35, 0x45, 0x06
    allow, errno, eperm, enosys = 0x7FFF0000, 0x00050000, 1, 38
    program = [
        (load, 0, 0, 4),  # 0: the ABI
        (jeq, 1, 0, audit),  # 1: ours -> 3
        (ret, 0, 0, errno | eperm),  # 2: another ABI's system calls are refused
        (load, 0, 0, 0),  # 3: the system call's number
        (jge, 6, 0, 0x40000000 if x32 else 0xFFFFFFFF),  # 4: x32's numbers -> 11
        (jeq, 3, 0, clone),  # 5: -> 9
        (jeq, 2, 0, unshare),  # 6: -> 9
        (jeq, 5, 0, clone3),  # 7: -> 13
        (ret, 0, 0, allow),  # 8
        (load, 0, 0, 16),  # 9: the low half of the first argument (the flags)
        (jset, 0, 1, CLONE_NEWUSER),  # 10: a new user namespace -> 11, else 12
        (ret, 0, 0, errno | eperm),  # 11
        (ret, 0, 0, allow),  # 12
        (ret, 0, 0, errno | enosys),  # 13: clone3, whose flags a filter cannot read: "no such call"
    ]
    return b"".join(struct.pack("=HBBI", *instruction) for instruction in program)


def forbid_user_namespaces() -> None:
    """Install the seccomp filter on this process and everything it starts (irreversible)."""

    class Program(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    code = seccomp_program()
    buffer = ctypes.create_string_buffer(code, len(code))
    program = Program(len(code) // 8, ctypes.addressof(buffer))
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    _check(_libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(program), 0, 0), "seccomp")


def become(uid: int) -> None:
    """Become the unprivileged user `uid` (group `uid`, no supplementary groups); irreversible."""
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)
    if os.getuid() != uid or os.geteuid() != uid or os.getgid() != uid:
        raise OSError(f"could not become user {uid}")


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        print("usage: _seal.py SPEC -- COMMAND...", file=sys.stderr)
        return 2
    spec = json.loads(argv[0])
    try:
        if spec.get("mount"):
            mount_area(spec["mount"], spec.get("uid"), spec.get("reach", []))
        if spec.get("remount"):
            remount_area(spec["remount"])
        if platform.machine() in ARCHES:
            forbid_user_namespaces()
        elif spec.get("require_seccomp", True):
            raise OSError(f"no seccomp filter for this machine ({platform.machine()})")
        if spec.get("uid") is not None:
            become(int(spec["uid"]))
            _libc.prctl(PR_SET_PDEATHSIG, 9, 0, 0, 0)  # after the change of user, which clears it
    except OSError as error:
        print(f"the sandbox could not be sealed: {error}", file=sys.stderr)
        return 126
    try:
        os.execvp(argv[2], argv[2:])
    except OSError as error:
        who = f"user {os.getuid()}"
        print(f"the sandbox could not start {argv[2]} as {who}: {error.strerror}", file=sys.stderr)
    return 127


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
