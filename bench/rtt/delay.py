"""A TCP forwarder that holds every chunk for a fixed time in each direction: a link with that much latency.

    python delay.py LISTEN_ADDRESS LISTEN_PORT TARGET_ADDRESS TARGET_PORT ONE_WAY_MS

The kernel here has no netem qdisc (`tc qdisc ... netem` says "Specified qdisc kind is unknown"), so the
latency is added in user space, in the node's network namespace, in front of its sshd: the round trip
over it is 2 x ONE_WAY_MS plus what the lab's veth takes (~0.05 ms).  Order is kept per direction; a
chunk is written when it is due, so bandwidth is not limited, only latency added.  Prints "ready" once
it listens.
"""

from __future__ import annotations

import asyncio
import sys
import time


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def send() -> None:
        while True:
            due, data = await queue.get()
            if (wait := due - time.monotonic()) > 0:
                await asyncio.sleep(wait)
            if not data:  # the other side ended: pass the end on, as late as the data
                writer.close()
                return
            writer.write(data)
            await writer.drain()

    sender = asyncio.ensure_future(send())
    try:
        while data := await reader.read(65536):
            queue.put_nowait((time.monotonic() + delay, data))
    finally:
        queue.put_nowait((time.monotonic() + delay, b""))
        await sender


async def main() -> None:
    address, port, target, target_port, one_way_ms = sys.argv[1:6]
    delay = float(one_way_ms) / 1000

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(target, int(target_port))
        await asyncio.gather(pipe(reader, up_writer, delay), pipe(up_reader, writer, delay), return_exceptions=True)

    server = await asyncio.start_server(handle, address, int(port))
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
