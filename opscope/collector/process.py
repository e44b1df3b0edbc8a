"""Worker processes that speak one JSON line per request and per reply: start, send, read, kill.

The build workers, the local and CUDA measuring workers and a bundle's measuring workers are all
such processes.  A worker writes a hello line (``{"ready": true, ...}``) when it has started;
``LineProcess`` waits for it, then reads replies with a time limit.  A reply that does not come in
time is ``None`` (the caller kills the worker: a timeout); a worker that closed its output is
``EOF`` (it died: a crash).  Nothing here imports TVM, and bundles carry this file verbatim, so
it needs only the standard library.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import tempfile
import time

try:  # inside opscope the error is printed on one line by the CLI; a bundle has no opscope
    from opscope.errors import OpscopeError as _Base
except ImportError:  # pragma: no cover - only in a bundle
    _Base = RuntimeError

#: what ``read`` returns when the worker closed its output (it died)
EOF = {"eof": True}


class WorkerStartError(_Base):
    """A worker did not say it was ready."""


class LineProcess:
    """One worker process; ``argv`` is its command line, ``env`` its environment.

    ``log``: keep the worker's stderr in a temporary file (``stderr_tail`` reads its end);
    without it stderr is inherited (``inherit``) or dropped.
    """

    def __init__(self, argv, env=None, name="worker", startup_timeout_s=180.0, stderr="log"):
        self.name = name
        self.log = tempfile.TemporaryFile(prefix="opscope-worker-") if stderr == "log" else None
        err = self.log if stderr == "log" else (None if stderr == "inherit" else subprocess.DEVNULL)
        self.proc = subprocess.Popen(list(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
                                     env=env)
        self._buf = b""
        #: the job the worker is busy with, for callers that keep several (builders)
        self.job = None
        hello = self.read(startup_timeout_s)
        if hello is None or hello is EOF or not hello.get("ready"):
            tail = self.stderr_tail()
            self.kill()
            raise WorkerStartError(f"the {name} did not start: {tail or 'no output'}")
        self.hello = hello

    def fileno(self):
        return self.proc.stdout.fileno()

    def alive(self):
        return self.proc.poll() is None

    def _line(self):
        if b"\n" not in self._buf:
            return None
        line, self._buf = self._buf.split(b"\n", 1)
        return json.loads(line)

    def feed(self):
        """Read what is there (call when ``fileno`` is readable): a reply when a line is complete,
        ``EOF`` when the worker is gone, else None."""
        chunk = os.read(self.fileno(), 65536)
        if not chunk:
            return EOF
        self._buf += chunk
        return self._line()

    def read(self, timeout_s):
        """The next reply; None when ``timeout_s`` passes first; ``EOF`` when the worker is gone."""
        deadline = time.monotonic() + timeout_s
        reply = self._line()
        while reply is None:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.fileno()], [], [], left)[0]:
                return None
            reply = self.feed()
        return reply

    def send(self, request):
        """Write one request; ``BrokenPipeError`` when the worker has exited."""
        self.proc.stdin.write((json.dumps(request) + "\n").encode())
        self.proc.stdin.flush()

    def ask(self, request, timeout_s):
        """``send`` then ``read``; a worker that had exited reads as ``EOF``."""
        try:
            self.send(request)
        except (BrokenPipeError, OSError):
            return EOF
        return self.read(timeout_s)

    def exit_status(self, timeout_s=30.0):
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return None

    def stderr_tail(self, n=400):
        if self.log is None or self.log.closed:
            return ""
        self.log.seek(0, os.SEEK_END)
        size = self.log.tell()
        self.log.seek(max(0, size - n))
        return self.log.read().decode(errors="replace").strip().replace("\n", " | ")

    def kill(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                stream.close()
            except OSError:
                pass
        if self.log is not None:
            self.log.close()

    def close(self, timeout_s=5.0):
        """End the worker politely (stdin closed: its loop ends), then make sure it is gone."""
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=timeout_s)
        except (OSError, subprocess.TimeoutExpired):
            pass
        self.kill()


def worker_env(threads=None, pinned=False, base=None, **extra):
    """The environment of a measuring worker: ``TVM_NUM_THREADS`` (read when TVM's thread pool
    starts), ``TVM_BIND_THREADS=1`` when pinned, no ``OMP_NUM_THREADS``; ``extra`` added as is."""
    env = dict(os.environ if base is None else base)
    env.pop("OMP_NUM_THREADS", None)
    if threads is not None:
        env["TVM_NUM_THREADS"] = str(int(threads))
    if pinned:
        env["TVM_BIND_THREADS"] = "1"
    else:
        env.pop("TVM_BIND_THREADS", None)
    env.update({k: str(v) for k, v in extra.items()})
    return env
