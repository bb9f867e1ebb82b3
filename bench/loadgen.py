"""A small keep-alive HTTP/1.1 load generator for the benchmarks.

httpx costs more CPU per request than the server under test, and the client shares
the same two cores with it, so the benchmarks speak HTTP over raw asyncio streams.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Connection:
    host: str
    port: int
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def request(
        self, method: str, path: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, bytes]:
        assert self.reader is not None and self.writer is not None
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Length: {len(body)}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self.writer.write(head.encode() + b"\r\n" + body)
        status_line = await self.reader.readline()
        status = int(status_line.split()[1])
        length = 0
        chunked = False
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value:
                chunked = True
        if chunked:
            data = b""
            while True:
                size = int((await self.reader.readline()).strip(), 16)
                chunk = await self.reader.readexactly(size + 2)
                if size == 0:
                    break
                data += chunk[:-2]
            return status, data
        return status, await self.reader.readexactly(length)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


@dataclass
class Run:
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0

    def percentile(self, p: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(len(ordered) * p))] * 1000

    def summary(self) -> str:
        return (
            f"{len(self.latencies)} requests in {self.seconds:.1f}s = {self.rate:,.0f} req/s; "
            f"p50 {self.percentile(0.50):.1f} ms, p99 {self.percentile(0.99):.1f} ms, "
            f"mean {statistics.fmean(self.latencies) * 1000 if self.latencies else 0:.1f} ms; errors {self.errors}"
        )


async def drive(
    *,
    host: str,
    port: int,
    clients: int,
    total: int,
    make_request: Callable[[int], tuple[str, str, bytes]],
    headers: dict[str, str],
) -> Run:
    """Send ``total`` requests from ``clients`` connections; request i is ``make_request(i)``."""
    run = Run()
    counter = iter(range(total))

    async def client() -> None:
        connection = Connection(host, port)
        await connection.open()
        try:
            for i in counter:
                method, path, body = make_request(i)
                started = time.perf_counter()
                status, _ = await connection.request(method, path, body, headers)
                if status >= 400:
                    run.errors += 1
                run.latencies.append(time.perf_counter() - started)
        finally:
            await connection.close()

    started = time.perf_counter()
    await asyncio.gather(*[client() for _ in range(clients)])
    run.seconds = time.perf_counter() - started
    return run
