"""Rank 0's log records, relayed live to the driver's logging under ``horovod.spark.run``.

Given ``stdout``/``stderr``, horovod.spark streams each rank's output to the driver, but the
driver reads that stream with ``shutil.copyfileobj`` from a buffered socket file
(horovod/runner/common/util/network.py, ``BasicClient._send_one``), which hands over
nothing until 64 KiB have arrived or the rank has exited: progress and ETA lines would
come after training. So rank 0 sends its records over a socket of its own, one JSON line
each, and the driver logs them through its own handlers, as under the ``local`` launcher.
"""
from __future__ import annotations

import json
import logging
import secrets
import socket
import threading

ACCEPT_POLL_S = 0.5
TOKEN_TIMEOUT_S = 10.0  # a connection that does not present the token in time is dropped
DRAIN_TIMEOUT_S = 10.0  # how long the driver waits for the last records once training returned


class DriverRelay:
    """A listener on the driver that logs the records of one rank; use it in a ``with`` block.

    ``address`` (``host``, ``port``, ``token``) goes to the rank, for :class:`RelayHandler`.
    """

    def __init__(self, bind_host: str, advertised_host: str):
        self._bind_host, self._advertised_host = bind_host, advertised_host

    def __enter__(self) -> "DriverRelay":
        self._listener = socket.create_server((self._bind_host, 0))
        self._listener.settimeout(ACCEPT_POLL_S)
        self._closing = threading.Event()
        self.address = {"host": self._advertised_host, "port": self._listener.getsockname()[1],
                        "token": secrets.token_hex(16)}
        self._thread = threading.Thread(target=self._serve, name="rank-log-relay", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        # Training has returned, so rank 0 has exited: the rest of its records and the end of
        # its stream are in flight. A connection still waiting in the backlog is served too.
        self._closing.set()
        self._thread.join(DRAIN_TIMEOUT_S)
        self._listener.close()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self._listener.accept()
            except socket.timeout:
                if self._closing.is_set():
                    return
                continue
            with connection, connection.makefile("rb") as lines:
                connection.settimeout(TOKEN_TIMEOUT_S)
                try:
                    if lines.readline().decode(errors="replace").strip() != self.address["token"]:
                        continue
                except OSError:
                    continue
                connection.settimeout(None)
                for line in lines:
                    fields = json.loads(line)
                    logging.getLogger(fields["name"]).handle(logging.makeLogRecord(fields))
                return


class RelayHandler(logging.Handler):
    """Sends each record to a :class:`DriverRelay` as one JSON line, message already formatted."""

    def __init__(self, address: dict):
        super().__init__()
        self._socket = socket.create_connection((address["host"], address["port"]), timeout=TOKEN_TIMEOUT_S)
        self._socket.settimeout(None)
        self._socket.sendall(address["token"].encode() + b"\n")

    def emit(self, record: logging.LogRecord) -> None:
        try:
            fields = {"name": record.name, "levelno": record.levelno, "levelname": record.levelname,
                      "msg": record.getMessage(), "created": record.created, "msecs": record.msecs,
                      "exc_text": logging.Formatter().formatException(record.exc_info) if record.exc_info else None}
            self._socket.sendall(json.dumps(fields).encode() + b"\n")
        except Exception:  # logging must never stop training; handleError reports on stderr
            self.handleError(record)

    def close(self) -> None:
        self._socket.close()
        super().close()
