"""TLS to MySQL and MongoDB, verified, with a throwaway CA made by the test.

MySQL: a second private MariaDB offering TLS. Its certificate names only the address
127.0.0.1; the user the runs log in as is created ``REQUIRE SSL``, so a session without TLS
is refused by the server itself. MongoDB: pymongo against a TLS listener with that certificate.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import mongomock
import pymongo
import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from panorama_elt.cli import main
from panorama_elt.datalakes import make_datalake
from panorama_elt.datasources import openedx_course_structures as cs
from panorama_elt.datasources.mysql import MySQLDatasource
from panorama_elt.errors import SourceError
from panorama_elt.settings import load_settings, parse_settings
from panorama_elt.synthetic.modulestore import COURSE_INDEX_DDL
from tests.conftest import ROOT, local_datalake, write_settings

USER, PASSWORD, DATABASE = "tls_reader", "tls-reader-pw", "tls_source"
ROWS = [(1, "first"), (2, "second"), (3, None)]


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificate(
    subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Certificate | None, signer: Any
) -> x509.Certificate:
    """A certificate valid for a day: a CA when ``issuer`` is None, else a server for 127.0.0.1."""
    now = datetime.datetime.now(datetime.UTC)
    public = key.public_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer.subject if issuer else _name(subject))
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
    )
    if issuer is None:
        builder = builder.add_extension(
            x509.BasicConstraints(ca=True, path_length=0), critical=True
        ).add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
    else:
        builder = (
            builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False,
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.public_key()),  # type: ignore[arg-type]
                critical=False,
            )
        )
    return builder.sign(signer, hashes.SHA256())


def _write(path: Path, *items: Any) -> Path:
    data = b""
    for item in items:
        if isinstance(item, x509.Certificate):
            data += item.public_bytes(serialization.Encoding.PEM)
        else:
            data += item.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption(),
            )
    path.write_bytes(data)
    return path


def make_certificates(folder: Path) -> dict[str, Path]:
    """A throwaway CA, a server certificate it signed, and an unrelated CA."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _certificate("panorama-elt test CA", ca_key, None, ca_key)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = _certificate("panorama-elt test server", server_key, ca, ca_key)
    other_key = ec.generate_private_key(ec.SECP256R1())
    other = _certificate("some other CA", other_key, None, other_key)
    return {
        "ca": _write(folder / "ca.pem", ca),
        "server": _write(folder / "server.pem", server),
        "server_key": _write(folder / "server-key.pem", server_key),
        "other_ca": _write(folder / "other-ca.pem", other),
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A second private MariaDB offering TLS, with a REQUIRE SSL user and a small table."""
    certs = make_certificates(tmp_path_factory.mktemp("tls"))
    port = _free_port()
    env = {
        **os.environ,
        "PANORAMA_BUILD_DIR": str(ROOT / "build" / "tls"),
        "PANORAMA_MYSQL_PORT": str(port),
        "PANORAMA_MYSQL_TLS_DIR": str(certs["ca"].parent),
    }
    script = ["bash", str(ROOT / "scripts" / "mariadb.sh")]

    def run(*args: str, sql: str | None = None) -> None:
        result = subprocess.run(
            [*script, *args], env=env, input=sql, capture_output=True, text=True
        )
        if result.returncode != 0:
            pytest.fail(f"mariadb.sh {args[0]} (TLS instance):\n{result.stdout}\n{result.stderr}")

    run("stop")  # one left running by an interrupted session still has its old certificate
    run("start")
    run(
        "client",
        sql=f"""
        DROP DATABASE IF EXISTS {DATABASE};
        CREATE DATABASE {DATABASE};
        CREATE TABLE {DATABASE}.notes (id int PRIMARY KEY, body varchar(20));
        USE {DATABASE};
        {COURSE_INDEX_DDL.rstrip().rstrip(";")};
        INSERT INTO {DATABASE}.notes VALUES (1, 'first'), (2, 'second'), (3, NULL);
        DROP USER IF EXISTS '{USER}'@'127.0.0.1';
        CREATE USER '{USER}'@'127.0.0.1' IDENTIFIED BY '{PASSWORD}' REQUIRE SSL;
        GRANT SELECT ON {DATABASE}.* TO '{USER}'@'127.0.0.1';
        """,
    )
    try:
        yield {"host": "127.0.0.1", "port": port, **certs}
    finally:
        run("stop")


def settings_file(tmp_path: Path, server: dict[str, Any], **tls: Any) -> Path:
    source = {
        "type": "mysql",
        "name": "tls_db",
        "mysql_host": server["host"],
        "mysql_port": server["port"],
        "mysql_username": USER,
        "mysql_password": PASSWORD,
        "mysql_database": DATABASE,
        **{k: str(v) if isinstance(v, Path) else v for k, v in tls.items()},
        "tables": [
            {
                "name": "notes",
                "fields": [{"name": "id", "type": "int"}, {"name": "body", "type": "varchar(20)"}],
            }
        ],
    }
    return write_settings(tmp_path / "settings.yaml", local_datalake(tmp_path / "lake"), [source])


def cli(path: Path, *args: str) -> Any:
    return CliRunner().invoke(main, ["--settings", str(path), *args], catch_exceptions=False)


def tls_settings(tmp_path: Path, server: dict[str, Any], tls: dict[str, Any]) -> Path:
    """Settings for ``server`` with the TLS keys ``tls`` ("ca"/"other_ca" name its files)."""
    values = {k: server[v] if k == "mysql_ssl_ca" else v for k, v in tls.items()}
    host = values.pop("mysql_host", server["host"])
    return settings_file(tmp_path, {**server, "host": host}, **values)


WORKING = [
    pytest.param({"mysql_ssl_ca": "ca"}, id="verified-with-the-ca"),
    pytest.param(
        {"mysql_ssl_ca": "ca", "mysql_host": "localhost", "mysql_ssl_verify_identity": False},
        id="verified-chain-any-hostname",
    ),
    # No TLS key at all: PyMySQL's preferred mode encrypts, and verifies nothing (the CA is
    # not even given): what the README says the default protects against, and what not.
    pytest.param({}, id="default-encrypts-unverified"),
]


@pytest.mark.mariadb
@pytest.mark.parametrize("tls", WORKING)
def test_with_tls_the_run_is_encrypted_and_complete(
    tmp_path: Path, tls_server: dict[str, Any], tls: dict[str, Any]
) -> None:
    path = tls_settings(tmp_path, tls_server, tls)
    for command in ("create-datalake-tables", "create-datalake-views"):
        assert cli(path, command, "--all").exit_code == 0
    result = cli(path, "extract-and-load", "--all")
    assert result.exit_code == 0, result.output
    settings = load_settings(path)
    lake = duckdb.connect(str(tmp_path / "lake" / "panorama.duckdb"), read_only=True)
    try:
        rows = lake.execute("SELECT id, body FROM openedx_table_notes").fetchall()
    finally:
        lake.close()
    assert sorted(rows) == ROWS
    # The datasource's own session (the one runs use) is encrypted.
    source = MySQLDatasource(settings.datasources[0])
    try:
        ((_, cipher),) = source.query("SHOW SESSION STATUS LIKE 'Ssl_cipher'", [])
    finally:
        source.close()
    assert cipher not in ("", b"", None)


FAILURES = [
    pytest.param({"mysql_ssl": False}, "access denied for user 'tls_reader'", id="no-tls"),
    pytest.param(
        {"mysql_ssl_ca": "other_ca"}, "TLS: the server's certificate is not trusted", id="wrong-ca"
    ),
    pytest.param(
        {"mysql_ssl": True},
        "TLS: the server's certificate is not trusted",
        id="system-cas-only",
    ),
    pytest.param(
        {"mysql_ssl_ca": "ca", "mysql_ssl_verify_identity": True, "mysql_host": "localhost"},
        "TLS: the server's certificate does not name 'localhost'",
        id="wrong-hostname",
    ),
    pytest.param(
        {"mysql_ssl_ca": "ca", "mysql_host": "localhost"},
        "TLS: the server's certificate does not name 'localhost'",
        id="wrong-hostname-checked-by-default",
    ),
]


@pytest.mark.mariadb
@pytest.mark.parametrize("tls, cause", FAILURES)
def test_an_unverified_or_refused_session_fails_the_run(
    tmp_path: Path, tls_server: dict[str, Any], tls: dict[str, Any], cause: str
) -> None:
    path = tls_settings(tmp_path, tls_server, tls)
    host = tls.get("mysql_host", tls_server["host"])
    assert cli(path, "create-datalake-tables", "--all").exit_code == 0
    result = cli(path, "extract-and-load", "--all")
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if cause in line]
    assert lines, result.output
    # The line names the datasource's host and port.
    assert all(f"mysql://{host}:{tls_server['port']}/" in line for line in lines), lines
    assert PASSWORD not in result.output
    settings = load_settings(path)
    datalake = make_datalake(settings.datalake)
    try:
        assert datalake.partitions(settings.tables[0]) == set()
    finally:
        datalake.close()
    # No file of the table (the built-in country codes table is loaded by create-datalake-tables).
    assert not list((tmp_path / "lake").rglob("notes*.csv"))


COURSE_INDEX_CASES = [
    pytest.param({"mysql_ssl_ca": "ca"}, None, id="verified"),
    pytest.param(
        {"mysql_ssl_ca": "other_ca"}, "TLS: the server's certificate is not trusted", id="wrong-ca"
    ),
    pytest.param({"mysql_ssl": False}, "access denied for user 'tls_reader'", id="no-tls"),
]


@pytest.mark.mariadb
@pytest.mark.parametrize("tls, cause", COURSE_INDEX_CASES)
def test_the_course_index_connection_uses_the_tls_settings(
    tmp_path: Path,
    tls_server: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    tls: dict[str, Any],
    cause: str | None,
) -> None:
    """Course structures read their MySQL course index with the same mysql_ssl* keys."""
    monkeypatch.setattr(cs, "mongo_client_factory", lambda *a, **k: mongomock.MongoClient())
    entry = {
        "type": "openedx_course_structures",
        "name": "structures",
        "mysql_host": tls_server["host"],
        "mysql_port": tls_server["port"],
        "mysql_username": USER,
        "mysql_password": PASSWORD,
        "mysql_database": DATABASE,
        **{k: str(tls_server[v]) if k == "mysql_ssl_ca" else v for k, v in tls.items()},
        "tables": [],
    }
    raw = {"datalake": local_datalake(tmp_path / "lake"), "datasources": [entry]}
    source = cs.CourseStructuresDatasource(parse_settings(raw, tmp_path / "s.yaml").datasources[0])
    try:
        if cause is None:
            source.test_connection()  # the REQUIRE SSL user reads the course index
            return
        with pytest.raises(SourceError) as caught:
            source.test_connection()
    finally:
        source.close()
    message = str(caught.value)
    assert cause in message and f"{tls_server['host']}:{tls_server['port']}" in message
    assert "\n" not in message and PASSWORD not in message


# --- MongoDB: the real pymongo client against a TLS listener --------------------------------


class TLSListener:
    """A TLS endpoint on 127.0.0.1 with the throwaway server certificate.

    It counts the TLS sessions in which the client went on to send its first message, then
    closes the connection: enough to see pymongo's certificate and host name checks at work,
    as there is no MongoDB server here.
    """

    def __init__(self, cert: Path, key: Path) -> None:
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert, key)
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = int(self.sock.getsockname()[1])
        self.sessions = 0
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(2)
                try:
                    with self.context.wrap_socket(conn, server_side=True) as tls:
                        # A client sends its hello only once it accepted the certificate
                        # (with TLS 1.3 the server's side of the handshake ends before).
                        if tls.recv(1024):
                            self.sessions += 1
                except OSError:  # the client refused our certificate, or went away
                    continue

    def close(self) -> None:
        self.stopped.set()
        self.thread.join()
        self.sock.close()


@pytest.fixture(scope="module")
def mongo_certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_certificates(tmp_path_factory.mktemp("mongo-tls"))


@pytest.fixture
def mongo_tls(mongo_certs: dict[str, Path]) -> Iterator[tuple[TLSListener, dict]]:
    """A listener of its own per test: no other test's client can reach it."""
    listener = TLSListener(mongo_certs["server"], mongo_certs["server_key"])
    try:
        yield listener, mongo_certs
    finally:
        listener.close()


MONGO_CASES = [
    pytest.param({"mongodb_tls_ca_file": "ca"}, True, None, id="verified"),
    pytest.param(
        {"mongodb_tls_ca_file": "other_ca"}, False, "certificate verify failed", id="wrong-ca"
    ),
    pytest.param(
        {"mongodb_tls_ca_file": "ca", "mongodb_host": "localhost"},
        False,
        "localhost",
        id="wrong-hostname",
    ),
    pytest.param(
        {
            "mongodb_tls_ca_file": "ca",
            "mongodb_host": "localhost",
            "mongodb_tls_allow_invalid_hostnames": True,
        },
        True,
        None,
        id="hostname-not-checked",
    ),
]


@pytest.mark.parametrize("tls, accepted, cause", MONGO_CASES)
def test_mongodb_tls_settings_reach_pymongo(
    tmp_path: Path,
    mongo_tls: tuple[TLSListener, dict],
    tls: dict[str, Any],
    accepted: bool,
    cause: str | None,
) -> None:
    listener, certs = mongo_tls
    entry = {
        "type": "openedx_course_structures",
        "name": "structures",
        "mongodb_host": "127.0.0.1",
        "mongodb_port": listener.port,
        # Long enough for a loaded machine to finish the handshake; no MongoDB answers anyway.
        "mongodb_timeout_seconds": 2,
        **{k: str(certs[v]) if k == "mongodb_tls_ca_file" else v for k, v in tls.items()},
        "tables": [],
    }
    raw = {"datalake": local_datalake(tmp_path / "lake"), "datasources": [entry]}
    settings = parse_settings(raw, tmp_path / "settings.yaml").datasources[0]
    assert cs.mongo_client_factory is pymongo.MongoClient  # production's client, no mock
    source = cs.CourseStructuresDatasource(settings)
    try:
        with pytest.raises(SourceError) as caught:
            source.test_connection()  # no MongoDB behind the TLS: it fails either way
    finally:
        source.close()
    message = str(caught.value)
    assert "\n" not in message and message.startswith("datasource structures (mongodb://")
    assert (listener.sessions > 0) is accepted, message
    if cause:
        assert cause in message
    else:
        assert "certificate" not in message
