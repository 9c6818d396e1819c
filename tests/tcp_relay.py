"""A TCP relay process: ``python tcp_relay.py PORT TARGET_PORT`` forwards every connection to 127.0.0.1:PORT to
127.0.0.1:TARGET_PORT, and prints ``ready`` once it listens.

The fault tests put it in front of the moto S3 server, which keeps its objects in memory only: killing and
restarting the relay is, for the driver, the S3 endpoint going away and coming back, while the objects behind it
persist as they do on a real object store.
"""

from __future__ import annotations

import asyncio
import sys


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(1 << 16):
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()


async def _relay(target: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", target)
    except OSError:
        writer.close()
        return
    await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer), return_exceptions=True)


async def main(port: int, target: int) -> None:
    server = await asyncio.start_server(lambda r, w: _relay(target, r, w), "127.0.0.1", port, reuse_address=True)
    print("ready", flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
