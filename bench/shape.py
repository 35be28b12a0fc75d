#!/usr/bin/env python3
"""A loopback TCP proxy that makes a server look far away: every connection gets a round-trip
delay and a bandwidth cap of its own (each direction), as a bucket in another region does.

    python3 bench/shape.py --to 127.0.0.1:8333 --rtt-ms 20 --mbps 40     # prints the port

Used by bench/s3.py (`--far`) to show what reading an archive in several ranges at once buys
when one connection gets a fraction of the bandwidth. The model: a chunk read on one side is
written on the other side half a round trip after it arrived, no sooner than the connection's
cap allows (a token bucket per connection and direction). Standard library only.
"""

import argparse
import asyncio
import sys
import threading
import time

CHUNK = 256 << 10


async def pipe(reader, writer, delay: float, rate: float):
    """Copies reader to writer, each chunk `delay` s after it arrived, at most `rate` bytes/s."""
    queue: asyncio.Queue = asyncio.Queue(maxsize=64)

    async def pull():
        try:
            while True:
                data = await reader.read(CHUNK)
                await queue.put((time.monotonic(), data))
                if not data:
                    return
        except (ConnectionError, OSError):
            await queue.put((time.monotonic(), b""))

    puller = asyncio.ensure_future(pull())
    free_at = time.monotonic()  # when the link is free to send the next byte
    try:
        while True:
            arrived, data = await queue.get()
            if not data:
                break
            now = time.monotonic()
            start = max(arrived + delay, free_at, now)
            free_at = start + len(data) / rate
            wait = free_at - now
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        puller.cancel()
        try:
            writer.close()
        except Exception:
            pass


def serve(upstream: tuple[str, int], rtt_ms: float, mbps: float, ready, port_box: list):
    delay = rtt_ms / 2000.0
    rate = mbps * 1e6

    async def handle(cr, cw):
        try:
            sr, sw = await asyncio.open_connection(*upstream)
        except OSError:
            cw.close()
            return
        await asyncio.gather(pipe(cr, sw, delay, rate), pipe(sr, cw, delay, rate))

    async def main():
        srv = await asyncio.start_server(handle, "127.0.0.1", 0)
        port_box.append(srv.sockets[0].getsockname()[1])
        ready.set()
        async with srv:
            await srv.serve_forever()

    asyncio.run(main())


def start(upstream: tuple[str, int], rtt_ms: float, mbps: float) -> int:
    """Starts the proxy on a daemon thread of this process; returns its port."""
    ready = threading.Event()
    box: list = []
    threading.Thread(target=serve, args=(upstream, rtt_ms, mbps, ready, box), daemon=True).start()
    if not ready.wait(10):
        raise SystemExit("shaping proxy did not start")
    return box[0]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--to", required=True, help="HOST:PORT of the server")
    ap.add_argument("--rtt-ms", type=float, default=20)
    ap.add_argument("--mbps", type=float, default=40, help="MB/s per connection and direction")
    args = ap.parse_args(argv)
    host, port = args.to.rsplit(":", 1)
    ready = threading.Event()
    box: list = []
    t = threading.Thread(target=serve, args=((host, int(port)), args.rtt_ms, args.mbps, ready, box), daemon=True)
    t.start()
    ready.wait(10)
    print(box[0], flush=True)
    t.join()
    return 0


if __name__ == "__main__":
    sys.exit(main())
