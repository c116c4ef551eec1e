#!/usr/bin/env python3
"""A logging TCP relay for benches/aws-tm/run.sh: what each client sends.

    wire.py LISTEN_PORT UPSTREAM_PORT LOG

Relays 127.0.0.1:LISTEN_PORT to 127.0.0.1:UPSTREAM_PORT and appends to LOG,
for every HTTP request a client sends, one line: the method, the path
without the query's values, and the headers that say how the body is
protected (x-amz-content-sha256, x-amz-checksum-*, x-amz-sdk-checksum-
algorithm, x-amz-trailer, content-encoding, content-md5,
x-amz-decoded-content-length). It sits behind the TLS terminator for
https, so it sees both schemes in the clear. Request heads are found by
parsing the byte stream as HTTP/1.1 (Content-Length framed bodies, as both
clients send them).
"""
import asyncio
import re
import sys

KEEP = re.compile(
    rb"^(x-amz-content-sha256|x-amz-checksum-[a-z0-9]+|x-amz-sdk-checksum-algorithm|"
    rb"x-amz-trailer|content-encoding|content-md5|x-amz-decoded-content-length|transfer-encoding)$"
)


class Parser:
    def __init__(self, log):
        self.buf = b""
        self.skip = 0
        self.log = log

    def feed(self, data):
        self.buf += data
        while True:
            if self.skip:
                n = min(self.skip, len(self.buf))
                self.buf = self.buf[n:]
                self.skip -= n
                if self.skip:
                    return
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head, self.buf = self.buf[:end], self.buf[end + 4:]
            lines = head.split(b"\r\n")
            method, target = (lines[0].split(b" ") + [b"", b""])[:2]
            path, _, query = target.partition(b"?")
            params = b"&".join(p.split(b"=")[0] for p in query.split(b"&") if p)
            kept, length = [], 0
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                name, value = name.strip().lower(), value.strip()
                if name == b"content-length":
                    length = int(value)
                if KEEP.match(name):
                    if name.startswith(b"x-amz-checksum-") or name == b"content-md5":
                        value = b"<value>"
                    kept.append(name + b": " + value)
            what = b"object" if path.count(b"/") >= 2 else b"bucket"
            self.log.write(
                (method + b" " + what + (b"?" + params if params else b"") + b" | "
                 + b" | ".join(kept) + b"\n").decode("latin-1")
            )
            self.log.flush()
            self.skip = length


async def pipe(reader, writer, parser=None):
    try:
        while True:
            data = await reader.read(1 << 16)
            if not data:
                break
            if parser:
                parser.feed(data)
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        try:
            writer.close()
        except Exception:
            pass


async def main():
    listen, upstream, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    log = open(path, "a")

    async def handle(cr, cw):
        ur, uw = await asyncio.open_connection("127.0.0.1", upstream)
        await asyncio.gather(pipe(cr, uw, Parser(log)), pipe(ur, cw))

    server = await asyncio.start_server(handle, "127.0.0.1", listen)
    async with server:
        await server.serve_forever()


asyncio.run(main())
