"""MySQL 8 authentication without TLS: PyMySQL's RSA path works in the installed environment.

There is no MySQL 8 server here (the private server is MariaDB, which has neither
caching_sha2_password nor sha256_password). So a small server on 127.0.0.1 speaks MySQL 8's
side of the handshake, as a server does for a user's first login after a restart: it asks for
full authentication, sends its RSA public key, and decrypts what the client sends with the
private key. The client is the datasource's own connect(), through the installed PyMySQL and
cryptography; the server checks the password it recovers against the one it expects.
"""

from __future__ import annotations

import os
import socket
import struct
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from panorama_elt.datasources.mysql import MySQLDatasource
from panorama_elt.errors import SourceError
from panorama_elt.settings import parse_settings
from tests.conftest import local_datalake

PASSWORD = "Tutor-generated-pw-7"  # what the emulated server expects

# Capability flags (MySQL client/server protocol): long password, connect with db,
# protocol 4.1, transactions, secure connection, multi results, plugin auth, lenenc auth data.
CAPABILITIES = 0x1 | 0x8 | 0x200 | 0x2000 | 0x8000 | 0x20000 | 0x80000 | 0x200000


class Mysql8AuthServer:
    """MySQL 8's handshake for one plugin, then OK to every query until COM_QUIT."""

    def __init__(self, plugin: str) -> None:
        self.plugin = plugin
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.nonce = os.urandom(20).replace(b"\0", b"\1")
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        self.steps: list[str] = []
        self.recovered: bytes | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    # --- packets ---
    def _send(self, conn: socket.socket, seq: int, payload: bytes) -> None:
        conn.sendall(struct.pack("<I", len(payload))[:3] + bytes([seq]) + payload)

    def _recv(self, conn: socket.socket) -> tuple[int, bytes]:
        header = self._exactly(conn, 4)
        length = int.from_bytes(header[:3], "little")
        return header[3], self._exactly(conn, length)

    @staticmethod
    def _exactly(conn: socket.socket, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = conn.recv(n - len(data))
            if not chunk:
                raise ConnectionError("client went away")
            data += chunk
        return data

    @staticmethod
    def _ok(status: int = 0) -> bytes:
        return b"\x00\x00\x00" + struct.pack("<HH", status, 0)

    def _greeting(self) -> bytes:
        return (
            b"\x0a8.4.3\x00"
            + struct.pack("<I", 42)
            + self.nonce[:8]
            + b"\x00"
            + struct.pack("<H", CAPABILITIES & 0xFFFF)
            + bytes([45])  # utf8mb4
            + struct.pack("<H", 0)  # status: autocommit off
            + struct.pack("<H", CAPABILITIES >> 16)
            + bytes([21])
            + b"\x00" * 10
            + self.nonce[8:]
            + b"\x00"
            + self.plugin.encode()
            + b"\x00"
        )

    def _serve(self) -> None:
        try:
            conn, _ = self.sock.accept()
            with conn:
                conn.settimeout(10)
                self._handshake(conn)
                while True:  # SET AUTOCOMMIT and the like get OK; COM_QUIT ends
                    seq, payload = self._recv(conn)
                    if payload[:1] == b"\x01":
                        self.steps.append("quit")
                        return
                    self._send(conn, seq + 1, self._ok())
        except (OSError, AssertionError, ValueError) as exc:  # reported by the test
            self.error = exc

    def _handshake(self, conn: socket.socket) -> None:
        self._send(conn, 0, self._greeting())
        seq, response = self._recv(conn)
        self.steps.append("response")
        public_pem = self.key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        if self.plugin == "caching_sha2_password":
            # The fast path needs the server's cache of the password: empty after a restart.
            self._send(conn, seq + 1, b"\x01\x04")  # perform full authentication
            seq, asked = self._recv(conn)
            assert asked == b"\x02", asked  # the client asks for the public key
            self.steps.append("public key requested")
        self._send(conn, seq + 1, b"\x01" + public_pem)
        seq, encrypted = self._recv(conn)
        self.steps.append("encrypted password")
        plain = self.key.decrypt(
            encrypted,
            padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None),
        )
        # The password and a NUL, XORed with the nonce (repeated), as MySQL 8 defines it.
        self.recovered = bytes(b ^ self.nonce[i % len(self.nonce)] for i, b in enumerate(plain))
        if self.recovered == PASSWORD.encode() + b"\0":
            self._send(conn, seq + 1, self._ok())
        else:
            error = b"Access denied"
            self._send(conn, seq + 1, b"\xff" + struct.pack("<H", 1045) + b"#28000" + error)

    def close(self) -> None:
        self.sock.close()
        self.thread.join(timeout=10)


@pytest.fixture(params=["caching_sha2_password", "sha256_password"])
def server(request: pytest.FixtureRequest) -> Iterator[Mysql8AuthServer]:
    emulated = Mysql8AuthServer(request.param)
    yield emulated
    emulated.close()


def datasource(tmp_path: Path, port: int, password: str) -> MySQLDatasource:
    entry: dict[str, Any] = {
        "type": "mysql",
        "name": "mysql8",
        "mysql_host": "127.0.0.1",
        "mysql_port": port,
        "mysql_username": "panorama",
        "mysql_password": password,
        "mysql_database": "openedx",
        "tables": [],
    }
    raw = {"datalake": local_datalake(tmp_path / "lake"), "datasources": [entry]}
    return MySQLDatasource(parse_settings(raw, tmp_path / "s.yaml").datasources[0])


def test_full_authentication_over_rsa_without_tls(tmp_path: Path, server: Mysql8AuthServer) -> None:
    source = datasource(tmp_path, server.port, PASSWORD)
    source.connect()
    source.close()
    server.thread.join(timeout=10)
    assert server.error is None, server.error
    assert server.recovered == PASSWORD.encode() + b"\0"
    expected = ["response", "encrypted password", "quit"]
    if server.plugin == "caching_sha2_password":
        expected.insert(1, "public key requested")
    assert server.steps == expected


def test_a_wrong_password_is_refused_with_one_line(
    tmp_path: Path, server: Mysql8AuthServer
) -> None:
    source = datasource(tmp_path, server.port, "not-the-password")
    with pytest.raises(SourceError) as caught:
        source.connect()
    server.thread.join(timeout=10)
    message = str(caught.value)
    assert message.startswith("datasource mysql8 (mysql://127.0.0.1:")
    assert "access denied for user 'panorama'" in message
    assert "not-the-password" not in message
