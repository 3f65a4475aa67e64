"""The ISO 8583 TCP listener (`cardgate serve --iso8583-listen HOST:PORT`): mutual TLS
with client certificates of the gateway's own CA (a terminal's, bound to its merchant and
outlet as for gRPC), framed messages (framing.py), many in flight per connection: each is
answered when the core has answered it, so answers go out in any order and the terminal
matches them by STAN and terminal id.

A framing error (a length of 0 or too large, a message cut short: the connection ends
inside it, or it is not whole within message_timeout_s of its length) closes the
connection after a log line: the stream can no longer be read in step. Anything else
wrong in a message is answered (host.py); one connection's trouble never touches another.
"""
import asyncio
import logging

import grpc
from cryptography import x509

from cardgate.gateway import limits
from cardgate.gateway.iso8583 import framing, host, response_codes
from cardgate.gateway.iso8583.codec import FormatError
from cardgate.gateway.netaddr import host_of
from cardgate.gateway.security.access import Denied
from cardgate.gateway.security.pki import PkiError, identity_of

log = logging.getLogger("cardgate.iso8583")


class IsoListener:
    def __init__(self, operations, access, pki, listen: str, profile: str = "1987",
                 tls: bool = True, metrics=None):
        self.operations, self.access, self.pki = operations, access, pki
        self.metrics = metrics
        self.listen, self.profile, self.tls = listen, profile, tls
        self.server = None
        self.port = None
        self.message_timeout_s = framing.MESSAGE_TIMEOUT_S

    async def start(self):
        host, port = host_of(self.listen), int(self.listen.rsplit(":", 1)[1])
        context = self.pki.tls_server_context() if self.tls else None
        self.server = await asyncio.start_server(self._connection, host, port, ssl=context,
                                                 limit=framing.MESSAGE_BYTES_MAX * 4)
        self.port = self.server.sockets[0].getsockname()[1]
        log.info("ISO 8583 (profile %s) listening on %s:%d", self.profile, host, self.port)

    async def stop(self):
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    def _terminal(self, writer):
        """The pki.Identity of the connection's certificate (None without TLS)."""
        if not self.tls:
            return None
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        identity = identity_of(x509.load_der_x509_certificate(der))
        if identity.role != "terminal":
            raise PkiError(f"{identity.describe()} is not a terminal: only terminals send "
                           "ISO 8583")
        return identity

    async def _connection(self, reader, writer):
        peer = writer.get_extra_info("peername")
        try:
            identity = self._terminal(writer)
        except (PkiError, ValueError) as exc:
            log.warning("ISO 8583 connection from %s refused: %s", peer, exc)
            writer.close()
            return
        sending = asyncio.Lock()
        in_flight = asyncio.Semaphore(limits.STREAM_IN_FLIGHT_MAX)
        tasks = set()
        try:
            while True:
                try:
                    data = await framing.read_message(reader, self.message_timeout_s)
                except FormatError as exc:
                    log.warning("ISO 8583 connection from %s closed: %s", peer, exc)
                    break
                if data is None:
                    break
                refused = None
                if identity is not None:
                    try:             # revoked or expired since it connected; its rate limit
                        self.access.admit_stream_item(identity, None)
                    except Denied as exc:
                        if exc.code != grpc.StatusCode.RESOURCE_EXHAUSTED:
                            log.warning("ISO 8583 connection from %s closed: %s", peer, exc)
                            break
                        refused = response_codes.SYSTEM_MALFUNCTION, "RESOURCE_EXHAUSTED"
                await in_flight.acquire()
                task = asyncio.create_task(self._answer(data, identity, writer, sending,
                                                        in_flight, refused))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
        except (ConnectionError, OSError) as exc:
            log.info("ISO 8583 connection from %s ended: %s", peer, exc)
        finally:
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)
            writer.close()

    async def _answer(self, data, identity, writer, sending, in_flight, refused):
        try:
            answer = await host.respond(self.operations, data, identity, self.profile,
                                        self.metrics, refused)
            async with sending:
                writer.write(framing.frame(answer))
                await writer.drain()
        except (ConnectionError, OSError):
            pass                         # the terminal went away: it sends the message again
        finally:
            in_flight.release()
