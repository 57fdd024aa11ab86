"""The floor: parallel bare asyncssh connect + one command per host (curve25519-sha256).

python floor.py HOSTS.json     # [{"address", "port", "user", "host_key", "key"}...]
"""

from __future__ import annotations

import asyncio
import json
import sys

import asyncssh


async def one(h: dict[str, str]) -> str:
    key = asyncssh.import_public_key(h["host_key"])
    async with asyncssh.connect(
        h["address"],
        port=int(h["port"]),
        username=h["user"],
        client_keys=[h["key"]],
        known_hosts=([key], [], []),
        server_host_key_algs=[h["host_key"].split()[0]],
        kex_algs=["curve25519-sha256"],
    ) as conn:
        return str((await conn.run("uname -m", check=True)).stdout).strip()


async def main() -> None:
    hosts = json.loads(open(sys.argv[1]).read())  # noqa: ASYNC230, SIM115 (tiny file, before any I/O)
    print(await asyncio.gather(*(one(h) for h in hosts)))


asyncio.run(main())
