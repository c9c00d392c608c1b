"""The chaos suite's delaying TCP proxy (the kernel here has no netem).

Runs inside the bridge namespace. For each device it listens on
BRIDGE_IP:PROXY_BASE_PORT+device and forwards to that device's real
address; the node a connection comes from is read off its source address,
and every chunk is held for the current delay of link (source node ->
target node) before it is passed on, in order, in both directions.

Control: JSON lines on a Unix socket (path given as the first argument):
  {"cmd": "listen", "device": D, "node": N, "target": "IP:PORT"}
  {"cmd": "delay", "links": [[from_node, to_node, ms], ...]}
  {"cmd": "reset", "node": N | null}   close the connections touching node N (or all)
  {"cmd": "stats"}                    connections and bytes so far
Each command gets one JSON line back.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from net import BRIDGE_IP, node_of_ip, proxy_port  # noqa: E402

DELAY: dict[tuple[int, int], float] = {}
CONNS: set["Conn"] = set()
STATS = {"connections": 0, "bytes": 0}


class Conn:
    def __init__(self, src: int | None, dst: int, writers: list[asyncio.StreamWriter]):
        self.src = src
        self.dst = dst
        self.writers = writers

    def close(self) -> None:
        for w in self.writers:
            try:
                w.transport.abort()
            except Exception:
                pass


async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, link: tuple, conn: Conn) -> None:
    queue: asyncio.Queue = asyncio.Queue()

    async def send() -> None:
        while True:
            due, data = await queue.get()
            if data is None:
                break
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(data)
            STATS["bytes"] += len(data)
            await writer.drain()
        try:
            writer.write_eof()
        except Exception:
            pass

    sender = asyncio.create_task(send())
    last_due = 0.0
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            d = DELAY.get(link, 0.0) / 1000.0
            due = max(time.monotonic() + d, last_due)
            last_due = due
            await queue.put((due, data))
            # Backpressure: do not buffer more than a few MB per direction.
            while queue.qsize() > 256:
                await asyncio.sleep(0.01)
        await queue.put((0, None))
        await sender
    except Exception:
        sender.cancel()
    finally:
        conn.close()
        CONNS.discard(conn)


async def serve(device: int, node: int, target: str) -> None:
    host, port = target.rsplit(":", 1)

    async def handle(cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        peer = cw.get_extra_info("peername")
        src = node_of_ip(peer[0]) if peer else None
        try:
            ur, uw = await asyncio.wait_for(asyncio.open_connection(host, int(port)), 5)
        except Exception:
            cw.transport.abort()
            return
        conn = Conn(src, node, [cw, uw])
        CONNS.add(conn)
        STATS["connections"] += 1
        fwd = (src, node)
        back = (node, src)
        await asyncio.gather(pump(cr, uw, fwd, conn), pump(ur, cw, back, conn), return_exceptions=True)

    await asyncio.start_server(handle, BRIDGE_IP, proxy_port(device), reuse_address=True)


async def control(path: str) -> None:
    async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        while True:
            line = await r.readline()
            if not line:
                break
            try:
                msg = json.loads(line)
                cmd = msg["cmd"]
                reply: dict = {"ok": True}
                if cmd == "listen":
                    await serve(int(msg["device"]), int(msg["node"]), msg["target"])
                elif cmd == "delay":
                    for a, b, ms in msg["links"]:
                        DELAY[(a, b)] = float(ms)
                elif cmd == "reset":
                    n = msg.get("node")
                    for c in list(CONNS):
                        if n is None or c.src == n or c.dst == n:
                            c.close()
                elif cmd == "stats":
                    reply.update(STATS, open=len(CONNS))
                else:
                    reply = {"ok": False, "error": f"unknown command {cmd}"}
            except Exception as e:  # a bad command must not stop the network
                reply = {"ok": False, "error": repr(e)}
            w.write((json.dumps(reply) + "\n").encode())
            await w.drain()

    if os.path.exists(path):
        os.unlink(path)
    server = await asyncio.start_unix_server(handle, path)
    print("proxy ready", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(control(sys.argv[1]))
