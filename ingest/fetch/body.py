"""Response bodies decoded under a cap: identity, or gzip and deflate inflated at most ``room + 1`` bytes a call."""

from __future__ import annotations

import zlib
from typing import Protocol


class Decoder(Protocol):
    def feed(self, data: bytes, room: int) -> bytes: ...


class Identity:
    def feed(self, data: bytes, room: int) -> bytes:
        return data


class Inflater:
    """gzip or deflate, inflating at most ``room + 1`` bytes per call so a bomb is caught at the cap, not after it."""

    def __init__(self, coding: str) -> None:
        self._gzip = coding in ("gzip", "x-gzip")
        self._obj = zlib.decompressobj(16 + zlib.MAX_WBITS if self._gzip else zlib.MAX_WBITS)
        self._fallback_done = False
        self._ended = False

    def feed(self, data: bytes, room: int) -> bytes:
        out: list[bytes] = []
        produced = 0
        while data and not self._ended:
            try:
                chunk = self._obj.decompress(data, room + 1 - produced)
            except zlib.error:
                # "deflate" is meant to be zlib-wrapped (RFC 9110 8.4.1.2) but some servers send raw deflate.
                if self._gzip or self._fallback_done:
                    raise
                self._obj = zlib.decompressobj(-zlib.MAX_WBITS)
                self._fallback_done = True
                continue
            self._fallback_done = True
            out.append(chunk)
            produced += len(chunk)
            if produced > room:
                break
            if self._obj.eof:
                rest = self._obj.unused_data
                if self._gzip and rest.startswith(b"\x1f\x8b"):  # another gzip member (RFC 1952 2.2)
                    self._obj = zlib.decompressobj(16 + zlib.MAX_WBITS)
                    data = rest
                    continue
                self._ended = True  # bytes after the end of the stream are ignored, as browsers do
                break
            data = self._obj.unconsumed_tail
        return b"".join(out)
