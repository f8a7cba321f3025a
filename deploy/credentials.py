"""Keys and certificates for a deployment: a CA, TLS certificates, silo node keys.

    python deploy/credentials.py --out deploy/credentials --silos silo-0,silo-1,silo-2 \
        --hosts localhost,127.0.0.1,superlink,admin --superlink 127.0.0.1:8000

Writes (private keys mode 0600, never overwritten; rerun with more silos to add them)::

    OUT/ca/ca.crt, ca.key                 the CA (keep ca.key offline)
    OUT/superlink/ca.crt, server.pem, server.key, superexec.secret
    OUT/admin/ca.crt, server.pem, server.key, credentials.json   (the admin API's)
    OUT/operator.token                    the operator's admin API token (`tmc admin`)
    OUT/silos/NAME/ca.crt, node.key, node.pub   ECDSA P-384, OpenSSH format
    OUT/silos/NAME/admin.token            with --silo-tokens: may forget that silo only
    OUT/flwr/config.toml                  a Flower connection "tmc" that trusts the CA
    OUT/register.sh                       one `flwr supernode register` line per silo

``node.key`` is what ``flower-supernode --auth-supernode-private-key`` loads and
``node.pub`` what ``flwr supernode register`` sends (both OpenSSH, NIST P-384).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import re
import secrets
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

SILO_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"  # as common.components.component
HOST_PATTERN = re.compile(r"^[A-Za-z0-9*]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$")
CONNECTION = "tmc"


class CredentialsError(Exception):
    """The request cannot be carried out; nothing was overwritten."""


class Request(BaseModel):
    """What to generate (validated command line)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    out: Path
    silos: tuple[str, ...] = Field(default=(), max_length=10_000)
    hosts: tuple[str, ...] = Field(min_length=1)
    superlink: str = Field(pattern=r"^[^\s:]+:\d{1,5}$")
    days: int = Field(825, ge=1, le=36_500)
    admin_tokens: bool = True
    silo_tokens: bool = False

    @field_validator("silos")
    @classmethod
    def _silo_names(cls, silos: tuple[str, ...]) -> tuple[str, ...]:
        for name in silos:
            if not re.fullmatch(SILO_PATTERN, name):
                raise ValueError(f"silo name {name!r} must match {SILO_PATTERN}")
        if len(set(silos)) != len(silos):
            raise ValueError("silo names must be distinct")
        return silos

    @field_validator("hosts")
    @classmethod
    def _host_names(cls, hosts: tuple[str, ...]) -> tuple[str, ...]:
        for host in hosts:
            if not _is_ip(host) and not HOST_PATTERN.fullmatch(host):
                raise ValueError(f"{host!r} is neither an IP address nor a DNS name")
        return hosts


@dataclass
class Report:
    """What was written (and what already existed and was kept)."""

    written: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    register_commands: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _write(path: Path, data: bytes, report: Report, *, private: bool = False) -> None:
    """Write atomically; private files are created 0600 (never world-readable, even briefly)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    fd = os.open(tmp, flags, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    tmp.replace(path)
    report.written.append(str(path))


def pem_private_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    """PKCS#8 PEM, unencrypted: the file mode (0600) protects it, as Flower expects."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _load_ca(directory: Path) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate] | None:
    cert_file, key_file = directory / "ca.crt", directory / "ca.key"
    if not cert_file.exists() and not key_file.exists():
        return None
    if not (cert_file.exists() and key_file.exists()):
        raise CredentialsError(f"{directory} holds only half a CA (ca.crt and ca.key go together)")
    key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise CredentialsError(f"{key_file} is not an EC private key")
    return key, x509.load_pem_x509_certificate(cert_file.read_bytes())


def new_ca(
    *, days: int, common_name: str = "tmc-federation CA"
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A self-signed CA (EC P-384) valid for ``days``, allowed to sign certificates only."""
    key = ec.generate_private_key(ec.SECP384R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA384())
    )
    return key, cert


def server_certificate(
    *,
    common_name: str,
    hosts: tuple[str, ...],
    ca: tuple[ec.EllipticCurvePrivateKey, x509.Certificate],
    days: int,
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A TLS server certificate (EC P-256) for ``hosts`` (DNS names or IPs), signed by ``ca``."""
    ca_key, ca_cert = ca
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [
        x509.IPAddress(ipaddress.ip_address(h)) if _is_ip(h) else x509.DNSName(h) for h in hosts
    ]
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA384())
    )
    return key, cert


def _server_dir(
    directory: Path,
    common_name: str,
    request: Request,
    ca: tuple[ec.EllipticCurvePrivateKey, x509.Certificate],
    report: Report,
) -> None:
    ca_pem = ca[1].public_bytes(serialization.Encoding.PEM)
    _write(directory / "ca.crt", ca_pem, report)
    cert_file, key_file = directory / "server.pem", directory / "server.key"
    if cert_file.exists() and key_file.exists():
        report.kept.append(str(cert_file))
        return
    key, cert = server_certificate(
        common_name=common_name, hosts=request.hosts, ca=ca, days=request.days
    )
    _write(key_file, pem_private_key(key), report, private=True)
    _write(cert_file, cert.public_bytes(serialization.Encoding.PEM), report)


def _silo_dir(directory: Path, ca_pem: bytes, report: Report) -> bool:
    """The silo's key pair (created unless present) and the CA; True if the key is new."""
    _write(directory / "ca.crt", ca_pem, report)
    key_file, pub_file = directory / "node.key", directory / "node.pub"
    existed = key_file.exists()
    if existed:
        report.kept.append(str(key_file))
        key = serialization.load_ssh_private_key(key_file.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise CredentialsError(f"{key_file} is not an ECDSA key in OpenSSH format")
    else:
        key = ec.generate_private_key(ec.SECP384R1())
        ssh_private = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
        _write(key_file, ssh_private, report, private=True)
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    _write(pub_file, public + f" {directory.name}\n".encode(), report)
    return not existed


def _flwr_config(request: Request, ca_file: Path) -> bytes:
    return (
        f'[superlink]\ndefault = "{CONNECTION}"\n\n'
        f"[superlink.{CONNECTION}]\n"
        f'address = "{request.superlink}"\n'
        f"root-certificates = {json.dumps(str(ca_file))}\n"
    ).encode()


def register_command(flwr_home: Path, public_key: Path, silo: str) -> str:
    """The ``flwr supernode register`` line that registers one silo's key under its name."""
    return shlex.join(
        [
            "env",
            f"FLWR_HOME={flwr_home}",
            "flwr",
            "supernode",
            "register",
            str(public_key),
            CONNECTION,
            "--name",
            silo,
        ]
    )


def _tmc() -> str | None:
    beside = Path(sys.executable).parent / "tmc"
    return str(beside) if beside.exists() else shutil.which("tmc")


def _token(tmc: str, credentials: Path, token_file: Path, role: list[str], report: Report) -> None:
    """One admin API token through `tmc admin token create` (only its hash is kept)."""
    if token_file.exists():
        report.kept.append(str(token_file))
        return
    argv = [tmc, "admin", "token", "create", "--credentials", str(credentials), *role]
    argv += ["--out", str(token_file)]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise CredentialsError(f"{shlex.join(argv)} failed: {done.stderr.strip()[-500:]}")
    report.written.append(str(token_file))


def _admin_tokens(out: Path, silos: list[str], request: Request, report: Report) -> None:
    tmc = _tmc()
    if tmc is None:
        report.notes.append("no `tmc` here: create admin tokens with `tmc admin token create`")
        return
    credentials = out / "admin" / "credentials.json"
    _token(tmc, credentials, out / "operator.token", ["--operator", "--label", "operator"], report)
    if request.silo_tokens:
        for silo in silos:
            _token(tmc, credentials, out / "silos" / silo / "admin.token", ["--silo", silo], report)


def generate(request: Request) -> Report:
    """Create what is missing under ``request.out``; existing keys are kept, never replaced."""
    out = request.out.expanduser().resolve()
    report = Report()
    ca = _load_ca(out / "ca")
    if ca is None:
        ca = new_ca(days=request.days)
        _write(out / "ca" / "ca.key", pem_private_key(ca[0]), report, private=True)
        _write(out / "ca" / "ca.crt", ca[1].public_bytes(serialization.Encoding.PEM), report)
    else:
        report.kept.append(str(out / "ca" / "ca.crt"))
    ca_pem = ca[1].public_bytes(serialization.Encoding.PEM)
    _server_dir(out / "superlink", "superlink", request, ca, report)
    _server_dir(out / "admin", "admin", request, ca, report)
    secret = out / "superlink" / "superexec.secret"
    if secret.exists():
        report.kept.append(str(secret))
    else:
        _write(secret, secrets.token_hex(32).encode(), report, private=True)
    _write(out / "flwr" / "config.toml", _flwr_config(request, out / "ca" / "ca.crt"), report)
    silos = sorted(
        {*request.silos, *(p.name for p in (out / "silos").glob("*") if p.is_dir())}
        if (out / "silos").is_dir()
        else set(request.silos)
    )
    every = []
    for silo in silos:
        line = register_command(out / "flwr", out / "silos" / silo / "node.pub", silo)
        every.append(line)
        if _silo_dir(out / "silos" / silo, ca_pem, report):
            report.register_commands.append(line)  # new keys: to register
    if request.admin_tokens:
        _admin_tokens(out, silos, request, report)
    script = "#!/bin/sh\n# Register each silo's key with the SuperLink (once per key).\n"
    script += "".join(f"{line}\n" for line in every)
    _write(out / "register.sh", script.encode(), report)
    (out / "register.sh").chmod(0o755)
    return report


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--out", required=True, type=Path, help="credentials folder")
    parser.add_argument("--silos", default="", help="comma-separated silo names")
    parser.add_argument(
        "--hosts",
        default="localhost,127.0.0.1,superlink,admin",
        help="DNS names and IP addresses the server certificates are valid for",
    )
    parser.add_argument(
        "--superlink",
        default="127.0.0.1:8000",
        help="HOST:PORT of the SuperLink as the operator's flwr reaches it",
    )
    parser.add_argument("--days", type=int, default=825, help="certificate validity")
    parser.add_argument(
        "--no-admin-tokens", action="store_true", help="do not create the operator's token"
    )
    parser.add_argument(
        "--silo-tokens", action="store_true", help="also a token per silo (its own data only)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        request = Request(
            out=args.out,
            silos=tuple(s.strip() for s in args.silos.split(",") if s.strip()),
            hosts=tuple(h.strip() for h in args.hosts.split(",") if h.strip()),
            superlink=args.superlink,
            days=args.days,
            admin_tokens=not args.no_admin_tokens,
            silo_tokens=args.silo_tokens,
        )
        report = generate(request)
    except (ValidationError, CredentialsError, OSError, ValueError) as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    if args.json:
        sys.stdout.write(json.dumps(report.__dict__, indent=2) + "\n")
    else:
        sys.stdout.write(f"wrote {len(report.written)} files under {request.out}\n")
        if report.register_commands:
            sys.stdout.write("register the new silo keys with the SuperLink (once it runs):\n")
            sys.stdout.write("".join(f"  {line}\n" for line in report.register_commands))
        sys.stdout.write("".join(f"note: {note}\n" for note in report.notes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
