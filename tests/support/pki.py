"""Certificates for TLS tests, made with trustme, and a Secret mounted the way the kubelet mounts it.

``Pki.make(dir)`` writes a CA, a server pair for ``localhost``/``127.0.0.1``, a client pair, and
a second CA with its own client pair (a certificate the agent must refuse). ``MountedSecret``
lays files out as the kubelet's AtomicWriter does (``tls.crt -> ..data/tls.crt``, ``..data ->
..2026_12_05_09_00_00.123456789``) and rotates them by replacing the ``..data`` symlink at once.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import shutil
import ssl
import time
from dataclasses import dataclass
from pathlib import Path

import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, load_pem_private_key
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class Pair:
    """A certificate chain file (leaf first) and its key file."""

    cert_file: str
    key_file: str
    leaf: x509.Certificate

    @property
    def serial(self) -> int:
        return self.leaf.serial_number

    @property
    def der_sha256(self) -> str:
        return hashlib.sha256(self.leaf.public_bytes(Encoding.DER)).hexdigest()


def write_pair(leaf: trustme.LeafCert, directory: Path, name: str) -> Pair:
    """``name.crt`` (the chain) and ``name.key`` (mode 0600) in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    cert_file, key_file = directory / f"{name}.crt", directory / f"{name}.key"
    cert_file.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    key_file.write_bytes(leaf.private_key_pem.bytes())
    key_file.chmod(0o600)
    return Pair(str(cert_file), str(key_file), x509.load_pem_x509_certificate(leaf.cert_chain_pems[0].bytes()))


def issue_client(ca: trustme.CA, directory: Path, name: str, *, subject: x509.Name, sans: list[x509.GeneralName]) -> Pair:
    """A client certificate trustme cannot make (a URI SAN, any subject), signed with ``ca``'s key."""
    ca_key = load_pem_private_key(ca.private_key_pem.bytes(), None)
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem.bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    leaf = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    directory.mkdir(parents=True, exist_ok=True)
    cert_file, key_file = directory / f"{name}.crt", directory / f"{name}.key"
    cert_file.write_bytes(leaf.public_bytes(Encoding.PEM))
    key_file.write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    key_file.chmod(0o600)
    return Pair(str(cert_file), str(key_file), leaf)


def name(**attributes: str) -> x509.Name:
    """``name(CN="web", O="Acme, Inc.")``: an x509 name, most general attribute last as written."""
    oids = {"CN": NameOID.COMMON_NAME, "O": NameOID.ORGANIZATION_NAME, "OU": NameOID.ORGANIZATIONAL_UNIT_NAME}
    return x509.Name([x509.NameAttribute(oids[key], value) for key, value in reversed(attributes.items())])


@dataclass(frozen=True)
class Pki:
    """One CA that signs the server and a client, and another CA whose client the agent must refuse."""

    dir: Path
    ca: trustme.CA
    ca_file: str
    server: Pair
    client: Pair
    other_ca_file: str
    stranger: Pair  # a client certificate from the other CA

    @classmethod
    def make(cls, directory: Path) -> Pki:
        directory.mkdir(parents=True, exist_ok=True)
        ca, other = trustme.CA(), trustme.CA()
        ca.cert_pem.write_to_path(str(directory / "ca.pem"))
        other.cert_pem.write_to_path(str(directory / "other-ca.pem"))
        return cls(
            dir=directory,
            ca=ca,
            ca_file=str(directory / "ca.pem"),
            server=write_pair(ca.issue_cert("localhost", "127.0.0.1"), directory, "server"),
            client=write_pair(ca.issue_cert("client.internal", common_name="client.internal"), directory, "client"),
            other_ca_file=str(directory / "other-ca.pem"),
            stranger=write_pair(other.issue_cert("stranger.internal", common_name="stranger.internal"), directory, "stranger"),
        )

    def __repr__(self) -> str:  # pytest prints fixtures of failed tests: the path says enough
        return f"Pki({self.dir})"

    def issue(self, directory: Path, name: str, *, not_after: datetime.datetime | None = None) -> Pair:
        """A new server pair for ``localhost``/``127.0.0.1`` from the same CA (a renewal), in ``directory``."""
        return write_pair(self.ca.issue_cert("localhost", "127.0.0.1", not_after=not_after), directory, name)

    def client_context(self, client: Pair | None = None, *, ca_file: str | None = None) -> ssl.SSLContext:
        """A client context trusting this CA (or ``ca_file``), presenting ``client`` when given."""
        context = ssl.create_default_context(cafile=ca_file or self.ca_file)
        if client is not None:
            context.load_cert_chain(client.cert_file, client.key_file)
        return context


class MountedSecret:
    """A directory of files that are symlinks into ``..data``, itself a symlink to a timestamped dir."""

    def __init__(self, root: Path, files: dict[str, str]) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self._current: Path | None = None
        self.update(files)
        for name in files:
            (root / name).symlink_to(Path("..data") / name)

    def path(self, name: str) -> str:
        return str(self.root / name)

    def update(self, files: dict[str, str]) -> None:
        """Copy ``{name: source file}`` into a new timestamped dir and swap ``..data`` to it in one rename."""
        stamp = time.strftime("..%Y_%m_%d_%H_%M_%S.", time.gmtime()) + f"{time.time_ns() % 10**9:09d}"
        new = self.root / stamp
        new.mkdir()
        for name, source in files.items():
            shutil.copyfile(source, new / name)
            (new / name).chmod(0o600)
        staging = self.root / "..data_tmp"
        staging.symlink_to(stamp)
        os.replace(staging, self.root / "..data")  # rename(2): readers see the old or the new dir, never neither
        if self._current is not None:
            shutil.rmtree(self._current)
        self._current = new
