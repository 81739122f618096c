"""Reading a response body with its size capped after decompression.

httpx decodes a whole compressed chunk at once, so one 64 KB read of a gzip bomb can become
64 MB, and ``response.read()`` keeps everything. Here the raw bytes are decompressed with
zlib's ``max_length``, so no more than ``cap + 1`` decoded bytes ever exist: a bigger body is
refused as soon as it crosses the cap, whatever its compression ratio.
"""

from __future__ import annotations

import zlib
from typing import Final

import httpx

ACCEPT_ENCODING: Final = "gzip, deflate"
"""What we ask for: the encodings this module can decode with a bound."""

_ZLIB_AUTO: Final = zlib.MAX_WBITS | 32  # gzip or zlib header, detected
_RAW_DEFLATE: Final = -zlib.MAX_WBITS


class BodyTooLargeError(Exception):
    """The decoded body would exceed the cap."""

    def __init__(self, cap: int) -> None:
        super().__init__(f"the answer is larger than {cap:,} bytes once decompressed")
        self.cap = cap


class BodyDecodeError(Exception):
    """The body does not match its Content-Encoding, or uses one we did not ask for."""


async def read_capped(response: httpx.Response, *, cap: int) -> bytes:
    """The decoded body of a streamed ``response``, at most ``cap`` bytes, else ``BodyTooLargeError``."""
    if response.is_stream_consumed:
        # A transport that hands over a response it already read (httpx.MockTransport does) decoded it too.
        if len(response.content) > cap:
            raise BodyTooLargeError(cap)
        return response.content
    decoder = _Decoder(response.headers.get("content-encoding", ""), cap=cap)
    async for chunk in response.aiter_raw():
        decoder.feed(chunk)
    return decoder.finish()


class _Decoder:
    def __init__(self, content_encoding: str, *, cap: int) -> None:
        encodings = [part.strip().lower() for part in content_encoding.split(",")]
        encodings = [name for name in encodings if name and name != "identity"]
        if len(encodings) > 1 or (encodings and encodings[0] not in ("gzip", "x-gzip", "deflate")):
            raise BodyDecodeError(f"unsupported Content-Encoding {content_encoding!r}")
        self._deflate = encodings == ["deflate"]
        self._zlib = zlib.decompressobj(_ZLIB_AUTO) if encodings else None
        self._started = False
        self._cap = cap
        self._size = 0
        self._parts: list[bytes] = []

    def feed(self, data: bytes) -> None:
        if self._zlib is None:
            self._keep(data)
            return
        try:
            self._inflate(data)
        except zlib.error as exc:
            if not (self._deflate and not self._started):
                raise BodyDecodeError(str(exc)) from None
            # "deflate" in the wild is often raw deflate without the zlib header.
            self._zlib = zlib.decompressobj(_RAW_DEFLATE)
            try:
                self._inflate(data)
            except zlib.error as raw_exc:
                raise BodyDecodeError(str(raw_exc)) from None
        self._started = True

    def _inflate(self, data: bytes) -> None:
        assert self._zlib is not None
        while data:
            self._keep(self._zlib.decompress(data, self._cap - self._size + 1))
            data = self._zlib.unconsumed_tail

    def _keep(self, data: bytes) -> None:
        self._size += len(data)
        if self._size > self._cap:
            raise BodyTooLargeError(self._cap)
        if data:
            self._parts.append(data)

    def finish(self) -> bytes:
        if self._zlib is not None:
            try:
                self._keep(self._zlib.flush())
            except zlib.error as exc:
                raise BodyDecodeError(str(exc)) from None
        return b"".join(self._parts)
