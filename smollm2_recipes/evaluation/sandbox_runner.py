"""Child process of `sandbox.run_program`: runs one untrusted program with an audit hook installed first.

Usage (never imported): python -I -B sandbox_runner.py SANDBOX_DIR PROGRAM.py

The hook refuses writes, renames and deletions outside SANDBOX_DIR, new processes, network connections
and ctypes. Audit hooks cannot be removed from Python code, so the program cannot switch it off; together
with the resource limits the parent sets (CPU time, memory, file size) and its wall-clock timeout this
is a guard against model-written mistakes (an infinite loop, `rm -rf`, a stray file), not a security
boundary against a determined attacker: run real untrusted code in a container.
"""

import os
import sys

ROOT = os.path.realpath(sys.argv[1])
PROGRAM = sys.argv[2]
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
REFUSED = ("subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "os.forkpty",
           "os.kill", "os.killpg", "pty.spawn", "socket.connect", "socket.bind", "socket.sendto", "ctypes.")
# path-mutating events: every str/bytes/PathLike argument must lie inside ROOT
MUTATIONS = {"os.remove", "os.rename", "os.rmdir", "os.mkdir", "os.chmod", "os.chown", "os.link", "os.symlink",
             "os.truncate", "os.utime", "os.chdir", "shutil.rmtree", "shutil.move", "shutil.copyfile", "shutil.copytree"}


def _inside(path) -> bool:
    try:
        real = os.path.realpath(os.fsdecode(path))
    except (TypeError, ValueError):
        return False
    return real == ROOT or real.startswith(ROOT + os.sep)


def _hook(event, args):
    if event == "open":
        path, mode, flags = args
        writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
            isinstance(flags, int) and flags > 0 and flags & WRITE_FLAGS)
        if writing and not isinstance(path, int) and not _inside(path):
            raise PermissionError(f"sandbox: writing outside {ROOT} is not allowed: {path!r}")
    elif event.startswith(REFUSED):
        raise PermissionError(f"sandbox: '{event}' is not allowed")
    elif event in MUTATIONS:
        for arg in args:
            if isinstance(arg, (str, bytes, os.PathLike)) and not _inside(arg):
                raise PermissionError(f"sandbox: '{event}' outside {ROOT} is not allowed: {arg!r}")


def main() -> None:
    with open(PROGRAM) as f:
        source = f.read()
    code = compile(source, PROGRAM, "exec")
    os.chdir(ROOT)
    sys.addaudithook(_hook)
    exec(code, {"__name__": "__main__", "__builtins__": __builtins__})


if __name__ == "__main__":
    main()
