"""Programs in processes of their own that skip the interpreter's start: forked from a warm parent.

A test about process behaviour (signals, exit codes, workers of a cluster, a server, a kill in
the middle of a save) needs the program in a process of its own, but not the seconds of CPU a
fresh interpreter spends importing TensorFlow and this library before the program begins.
`Popen` and `run` take the same command a test would give `subprocess` (`python script.py ...`,
`python -m module ...`, `python -c code ...`) and fork its process from a parent ("the zygote",
one per test worker) that imported those modules once and has run no TensorFlow op: TensorFlow
starts its thread pools, and gRPC its threads, at their first use, and a fork copies no thread.
The child then runs the command as `python` runs it: the script, module or code as `__main__`,
with the command's argv, environment, working directory and standard streams, and it ends through
the interpreter's own exit (atexit handlers, non-daemon threads joined, exit code, or killed by a
signal).

What stays different from a fresh interpreter: the modules the zygote imported were imported
before the program ran, and their objects are frozen (`gc.freeze`: no collection scans them). So
a command forks from a zygote started with its own values of what the interpreter and TensorFlow
read as they start (READ_AT_START: a library imported by a test may change them in the worker's
environment), and a test of import-time effects or of a process without this library keeps
`subprocess`.
"""

from __future__ import annotations

import atexit
import builtins
import gc
import json
import os
import queue
import runpy
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import types
from typing import IO, Optional, Union

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PRELOADED = ("tensorflow", "keras", "pix2pix_tf.training.loop", "pix2pix_tf.export.registry",
             "pix2pix_tf.inference.request", "pix2pix_tf.evaluation.config", "PIL.Image")
# Read as the interpreter and TensorFlow start: a command forks from a zygote that saw its values.
READ_AT_START = ("PYTHONPATH", "PYTHONHOME", "PYTHONHASHSEED", "PYTHONSAFEPATH", "PYTHONNOUSERSITE",
                 "TF_CPP_MIN_LOG_LEVEL", "TF_CPP_MAX_VLOG_LEVEL", "TF_CPP_VMODULE", "TF_ENABLE_ONEDNN_OPTS")
PIPE, DEVNULL, STDOUT = subprocess.PIPE, subprocess.DEVNULL, subprocess.STDOUT
_MESSAGE = 1 << 20
Stream = Union[None, int, IO]


class _Zygote:
    """The test side of one zygote: sends it commands, hears the pids it forked and how they ended."""

    def __init__(self, env: dict[str, str]):
        self.socket, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.process = subprocess.Popen([sys.executable, os.path.abspath(__file__), str(theirs.fileno())],
                                        pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL, cwd=ROOT, env=env)
        theirs.close()
        self.lock = threading.Lock()
        self.started: queue.Queue[int] = queue.Queue()
        self.ended: dict[int, tuple[threading.Event, list[int]]] = {}
        threading.Thread(target=self._hear, daemon=True).start()
        atexit.register(self.close)

    def close(self) -> None:
        """Ends the zygote (it ends when its socket shuts down) and reaps it."""
        try:
            self.socket.shutdown(socket.SHUT_RDWR)
        except OSError:  # It has ended already.
            pass
        self.process.wait(timeout=60)
        self.socket.close()

    def fork(self, request: dict, fds: list[int]) -> int:
        with self.lock:  # The zygote answers requests in order.
            socket.send_fds(self.socket, [json.dumps(request).encode()], fds)
            return self.started.get(timeout=60)

    def end_of(self, pid: int) -> tuple[threading.Event, list[int]]:
        with self.lock:
            return self.ended.setdefault(pid, (threading.Event(), []))

    def _hear(self) -> None:
        while message := self.socket.recv(_MESSAGE):
            news = json.loads(message)
            if "started" in news:
                self.started.put(news["started"])
                continue
            event, codes = self.end_of(news["ended"])
            codes.append(news["code"])
            event.set()


_zygotes: dict[tuple, _Zygote] = {}  # By the values of READ_AT_START they started with.


def _zygote_for(env: dict[str, str]) -> _Zygote:
    key = tuple(env.get(name) for name in READ_AT_START)
    if key not in _zygotes or _zygotes[key].process.poll() is not None:
        _zygotes[key] = _Zygote(env)
    return _zygotes[key]


class Popen:
    """`subprocess.Popen` for a `python` command, forked from the zygote (the parts tests use)."""

    def __init__(self, args: list[str], *, cwd: Optional[str] = None, env: Optional[dict] = None,
                 stdin: Stream = DEVNULL, stdout: Stream = None, stderr: Stream = None, text: bool = False,
                 prelude: str = ""):
        """`prelude`: Python the child runs before the command (`nohup`'s ignoring of SIGHUP, or
        `process_fixtures.GRAPH_OPTIMIZER_OFF`)."""
        if args[0] != sys.executable or len(args) < 2:
            raise ValueError(f"not a command of this Python: {args[:2]}")
        env = dict(os.environ if env is None else env)
        self.args, self.returncode = args, None
        self.stdin = self.stdout = self.stderr = None
        theirs: list[int] = []  # The child's stdin, stdout and stderr.
        ours: list[tuple[str, int, str]] = []  # (attribute, our end of a pipe, mode)
        handed_over: list[int] = []  # Closed here once the child has its copies.
        for index, (name, stream) in enumerate((("stdin", stdin), ("stdout", stdout), ("stderr", stderr))):
            if stream == STDOUT:
                theirs.append(theirs[1])
            elif stream == PIPE:
                read_end, write_end = os.pipe()
                child_end, our_end = (read_end, write_end) if index == 0 else (write_end, read_end)
                theirs.append(child_end)
                handed_over.append(child_end)
                ours.append((name, our_end, "w" if index == 0 else "r"))
            elif stream == DEVNULL:
                theirs.append(os.open(os.devnull, os.O_RDWR))
                handed_over.append(theirs[-1])
            else:
                theirs.append(index if stream is None else (stream if isinstance(stream, int) else stream.fileno()))
        self._zygote = _zygote_for(env)
        request = {"argv": list(args[1:]), "cwd": os.path.abspath(cwd or os.getcwd()), "env": env, "prelude": prelude}
        self.pid = self._zygote.fork(request, theirs)
        self._ended, self._codes = self._zygote.end_of(self.pid)
        for fd in handed_over:
            os.close(fd)
        for name, fd, mode in ours:
            setattr(self, name, open(fd, mode + ("" if text else "b")))

    def poll(self) -> Optional[int]:
        if self._ended.is_set():
            self.returncode = self._codes[0]
        return self.returncode

    def wait(self, timeout: Optional[float] = None) -> int:
        if not self._ended.wait(timeout):
            raise subprocess.TimeoutExpired(self.args, timeout)
        return self.poll()

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, signum)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def communicate(self, input=None, timeout: Optional[float] = None) -> tuple:
        """Everything the pipes give until the process ends (what `subprocess` returns)."""
        read: dict[str, list] = {}
        readers = [threading.Thread(target=lambda n=name, s=stream: read.setdefault(n, [s.read()]), daemon=True)
                   for name, stream in (("stdout", self.stdout), ("stderr", self.stderr)) if stream is not None]
        if self.stdin is not None:
            if input:
                self.stdin.write(input)
            self.stdin.close()
        for reader in readers:
            reader.start()
        self.wait(timeout)
        for reader in readers:
            reader.join(timeout)
        for stream in (self.stdout, self.stderr):
            if stream is not None:
                stream.close()
        return tuple(read.get(name, [None])[0] for name in ("stdout", "stderr"))

    def __enter__(self) -> Popen:
        return self

    def __exit__(self, *_) -> None:
        for stream in (self.stdin, self.stdout, self.stderr):
            if stream is not None:
                stream.close()
        if self.poll() is None:
            self.kill()
            self.wait()


def run(args: list[str], *, cwd: Optional[str] = None, env: Optional[dict] = None, input=None,
        timeout: Optional[float] = None, text: bool = True, prelude: str = "") -> subprocess.CompletedProcess:
    """`subprocess.run(args, capture_output=True)`, forked from the zygote; killed at `timeout`."""
    process = Popen(args, cwd=cwd, env=env, stdin=PIPE if input is not None else DEVNULL, stdout=PIPE,
                    stderr=PIPE, text=text, prelude=prelude)
    try:
        stdout, stderr = process.communicate(input, timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        raise
    return subprocess.CompletedProcess(args, process.returncode, stdout, stderr)


# The zygote's side: this file run as a script.

def _serve(requests: socket.socket) -> tuple[dict, list[int]]:
    """Forks a child per request and reports each child's end; returns (in the child) its request."""
    children: dict[int, int] = {}  # pidfd -> pid
    while True:
        ready, _, _ = select.select([requests, *children], [], [])
        for fd in ready:
            if fd in children:
                pid = children.pop(fd)
                os.close(fd)
                _, status = os.waitpid(pid, 0)
                requests.send(json.dumps({"ended": pid, "code": os.waitstatus_to_exitcode(status)}).encode())
                continue
            message, fds, _, _ = socket.recv_fds(requests, _MESSAGE, 3)
            if not message:  # The test worker is gone: so is what its tests left running.
                for pid in children.values():
                    os.kill(pid, signal.SIGKILL)
                os._exit(0)
            pid = os.fork()
            if pid == 0:
                requests.close()
                for pidfd in children:
                    os.close(pidfd)
                return json.loads(message), fds
            for received in fds:
                os.close(received)
            children[os.pidfd_open(pid)] = pid
            requests.send(json.dumps({"started": pid}).encode())


def _become(request: dict, fds: list[int]) -> None:
    """This process becomes `python *argv` in `cwd` with `env` and the standard streams `fds`:
    the code runs in a new `__main__` module, as the interpreter runs it."""
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
    for fd in set(fds) - {0, 1, 2}:
        os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    tempfile.tempdir = None  # Found again from this environment's TMPDIR, as a fresh interpreter would.
    exec(compile(request["prelude"], "<prelude>", "exec"), {})
    option, *rest = request["argv"]
    main = sys.modules["__main__"] = types.ModuleType("__main__")
    main.__builtins__ = builtins
    if option == "-m":
        sys.argv, sys.path[0] = list(rest), os.getcwd()
        runpy._run_module_as_main(rest[0])  # What `python -m` runs: it sets argv[0] to the module's file.
        return
    if option == "-c":
        sys.argv, sys.path[0] = ["-c", *rest[1:]], ""
        path, source = "<string>", rest[0]
    else:
        sys.argv, sys.path[0] = [option, *rest], os.path.dirname(os.path.abspath(option))
        path = main.__file__ = option
        with open(option) as f:
            source = f.read()
    exec(compile(source, path, "exec"), main.__dict__)


if __name__ == "__main__":
    import importlib

    for name in PRELOADED:
        importlib.import_module(name)
    # The imported modules live as long as the program: frozen, its full collections (TFLite's
    # converter asks for one) do not scan them, nor touch (and so copy) their pages.
    gc.freeze()
    _become(*_serve(socket.socket(fileno=int(sys.argv[1]))))
