"""Parsing feed bodies in child processes, so that parsing uses another core while the main process stores.

A worker is ``python -m ingest.workers``: it imports only the parser (about 25 MB, where a multiprocessing child would
import the whole program again as its ``__main__``) and answers length-prefixed pickled requests on stdin with pickled
results on stdout, in order. Pickle is safe here: both ends are this program. A worker that dies fails the parses it
had in hand with :class:`WorkerError`; that is a bug or an out-of-memory kill, never a bad feed (a bad feed is a
``ParsedFeed`` like any other).
"""

from __future__ import annotations

import contextlib
import pickle
import queue
import struct
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Collection, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime
from typing import IO, Any

from ingest.parse import ParsedFeed, parse_feed

_LENGTH = struct.Struct("!Q")


@dataclass(frozen=True, slots=True)
class _Request:
    """One parse, as sent to a worker: the arguments of :func:`ingest.parse.parse_feed`."""

    body: bytes
    url: str
    headers: dict[str, str]
    tags: tuple[str, ...]
    now: datetime  # the fetch's time: the parser has no clock
    max_entries: int | None
    known: frozenset[str]

    def parse(self) -> ParsedFeed:
        return parse_feed(
            self.body,
            url=self.url,
            headers=self.headers,
            tags=self.tags,
            now=self.now,
            max_entries=self.max_entries,
            known=self.known,
        )


class WorkerError(RuntimeError):
    """A parse worker failed (died, or raised: a bug). Not a user mistake: it surfaces with its message."""


def _write_frame(out: IO[bytes], payload: Any) -> None:
    data = pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)
    out.write(_LENGTH.pack(len(data)) + data)
    out.flush()


def _read_frame(inp: IO[bytes]) -> Any:
    head = inp.read(_LENGTH.size)
    if len(head) < _LENGTH.size:
        raise EOFError
    (size,) = _LENGTH.unpack(head)
    data = inp.read(size)
    if len(data) < size:
        raise EOFError
    return pickle.loads(data)  # noqa: S301 - our own child process, see the module docstring


class _Worker:
    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ingest.workers"], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        self.waiting: deque[Future[ParsedFeed]] = deque()
        self.lock = threading.Lock()
        self.dead: str | None = None  # why it can take no more work
        self.outbox: queue.Queue[Any] = queue.Queue()
        # A writer thread: writing a big body blocks until the child reads it, and the caller must not wait.
        self.writer = threading.Thread(target=self._write, name="parse-writer", daemon=True)
        self.reader = threading.Thread(target=self._read, name="parse-reader", daemon=True)
        self.writer.start()
        self.reader.start()

    def submit(self, request: _Request) -> Future[ParsedFeed]:
        future: Future[ParsedFeed] = Future()
        with self.lock:
            if self.dead is not None:
                future.set_exception(WorkerError(self.dead))
                return future
            self.waiting.append(future)
        self.outbox.put(request)
        return future

    def _write(self) -> None:
        stdin = self.process.stdin
        assert stdin is not None
        try:
            while (request := self.outbox.get()) is not None:
                _write_frame(stdin, request)
        except OSError:
            pass  # the child died: the reader fails what it had
        finally:
            with contextlib.suppress(OSError):
                stdin.close()

    def _read(self) -> None:
        stdout = self.process.stdout
        assert stdout is not None
        try:
            while True:
                ok, value = _read_frame(stdout)
                with self.lock:
                    future = self.waiting.popleft()
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(WorkerError(f"parsing in a worker process failed: {value}"))
        except (EOFError, OSError):
            code = self.process.wait()
            with self.lock:
                self.dead = f"a parse worker process ended (exit code {code})"
                left, self.waiting = list(self.waiting), deque()
            for future in left:
                future.set_exception(WorkerError(self.dead))

    def close(self) -> None:
        self.outbox.put(None)
        self.writer.join()
        self.reader.join()
        self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


class ParsePool:
    """``workers`` child processes parsing in turn; 0 parses inline (in the caller's thread)."""

    def __init__(self, workers: int) -> None:
        self._size = workers
        self._workers: list[_Worker] = []  # started on the first parse: a pass of 304s needs none
        self._next = 0
        self._closed = False

    def __enter__(self) -> ParsePool:
        return self

    @property
    def workers(self) -> int:
        """How many worker processes parse (0: inline)."""
        return self._size

    def __exit__(self, *exc: object) -> None:
        self._closed = True  # a late submit (a fetch thread still ending) must not start workers nobody closes
        for worker in self._workers:
            worker.close()

    def submit(
        self,
        body: bytes,
        *,
        url: str,
        headers: Mapping[str, str],
        tags: Sequence[str],
        now: datetime,
        max_entries: int | None = None,
        known: Collection[str] = frozenset(),
    ) -> Future[ParsedFeed]:
        """:func:`ingest.parse.parse_feed` of these arguments, in a worker or (with no workers) at once."""
        request = _Request(body, url, dict(headers), tuple(tags), now, max_entries, frozenset(known))
        if self._closed:
            closed: Future[ParsedFeed] = Future()
            closed.set_exception(WorkerError("the parse pool is closed"))
            return closed
        if self._size:
            if not self._workers:
                self._workers = [_Worker() for _ in range(self._size)]
            self._next = (self._next + 1) % self._size
            return self._workers[self._next].submit(request)
        done: Future[ParsedFeed] = Future()
        done.set_result(request.parse())
        return done


def main() -> None:
    """The worker: parse each request, answer (True, ParsedFeed) or (False, the error), until stdin closes."""
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    while True:
        try:
            request: _Request = _read_frame(stdin)
        except EOFError:
            return
        try:
            answer: tuple[bool, Any] = (True, request.parse())
        except Exception as exc:  # a bug in the parser: reported to the parent, which raises it
            answer = (False, f"{type(exc).__name__}: {exc}")
        _write_frame(stdout, answer)


if __name__ == "__main__":
    main()
