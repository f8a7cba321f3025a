"""deploy/credentials.py: what it writes is what Flower and TLS clients expect."""

from __future__ import annotations

import ipaddress
import stat
from pathlib import Path
from types import ModuleType

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from flwr.cli.supernode.register import try_load_public_key
from flwr.supercore.primitives.asymmetric import public_key_to_bytes, uses_nist_ec_curve

HOSTS = ("localhost", "127.0.0.1", "superlink", "admin")


@pytest.fixture
def out(tmp_path: Path, credentials_module: ModuleType) -> Path:
    request = credentials_module.Request(
        out=tmp_path / "creds",
        silos=("silo-0", "silo-1"),
        hosts=HOSTS,
        superlink="127.0.0.1:8000",
        admin_tokens=False,  # `tmc admin token create` is exercised by the e2e test
    )
    credentials_module.generate(request)
    return tmp_path / "creds"


def test_silo_keys_are_what_flower_loads(out: Path) -> None:
    for silo in ("silo-0", "silo-1"):
        folder = out / "silos" / silo
        private = serialization.load_ssh_private_key((folder / "node.key").read_bytes(), None)
        # as flower-supernode --auth-supernode-private-key and flwr supernode register do
        assert isinstance(private, ec.EllipticCurvePrivateKey)
        assert uses_nist_ec_curve(private.public_key())
        registered = try_load_public_key(folder / "node.pub")
        assert registered == public_key_to_bytes(private.public_key())
        assert (folder / "ca.crt").read_bytes() == (out / "ca" / "ca.crt").read_bytes()


def test_server_certificates_chain_to_the_ca_and_name_every_host(out: Path) -> None:
    ca = x509.load_pem_x509_certificate((out / "ca" / "ca.crt").read_bytes())
    for server in ("superlink", "admin"):
        cert = x509.load_pem_x509_certificate((out / server / "server.pem").read_bytes())
        cert.verify_directly_issued_by(ca)
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert set(names.get_values_for_type(x509.DNSName)) == {"localhost", "superlink", "admin"}
        assert names.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
        key = serialization.load_pem_private_key((out / server / "server.key").read_bytes(), None)
        assert key.public_key() == cert.public_key()


def test_private_files_are_owner_only(out: Path) -> None:
    private = [
        out / "ca" / "ca.key",
        out / "superlink" / "server.key",
        out / "superlink" / "superexec.secret",
        out / "admin" / "server.key",
        out / "silos" / "silo-0" / "node.key",
    ]
    for path in private:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert len((out / "superlink" / "superexec.secret").read_bytes()) >= 32


def test_rerun_keeps_keys_and_adds_a_silo(out: Path, credentials_module: ModuleType) -> None:
    before = {p: p.read_bytes() for p in out.rglob("*") if p.suffix in (".key", ".pem")}
    report = credentials_module.generate(
        credentials_module.Request(
            out=out, silos=("silo-2",), hosts=HOSTS, superlink="127.0.0.1:8000", admin_tokens=False
        )
    )
    assert all(path.read_bytes() == data for path, data in before.items())
    assert (out / "silos" / "silo-2" / "node.key").exists()
    assert [line.split()[-1] for line in report.register_commands] == ["silo-2"]  # new only
    script = (out / "register.sh").read_text()
    assert [line.split()[-1] for line in script.splitlines()[2:]] == ["silo-0", "silo-1", "silo-2"]
    assert f"FLWR_HOME={out / 'flwr'}" in script
    config = (out / "flwr" / "config.toml").read_text()
    assert 'address = "127.0.0.1:8000"' in config
    assert str(out / "ca" / "ca.crt") in config


def test_bad_requests_are_refused(tmp_path: Path, credentials_module: ModuleType) -> None:
    assert credentials_module.main(["--out", str(tmp_path), "--silos", "bad name"]) == 2
    assert credentials_module.main(["--out", str(tmp_path), "--hosts", "not a host!"]) == 2
    assert not any(tmp_path.iterdir())
