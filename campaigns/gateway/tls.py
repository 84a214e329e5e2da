"""The gateway's TLS: the configured certificate pair, or a self-signed one made in the data
dir (cryptography), and the server context (TLS 1.2 at least)."""
from __future__ import annotations

import ssl
from typing import Any

from campaigns.settings import Settings


def tls_files(settings: Settings) -> tuple[str, str, bool]:
    """(cert, key, made now): the configured pair, or a self-signed one in the data dir."""
    g = settings.gateway
    if g.cert_file is not None and g.key_file is not None:
        return str(g.cert_file), str(g.key_file), False
    folder = settings.data_dir / "tls"
    cert, key = folder / "gateway-cert.pem", folder / "gateway-key.pem"
    if cert.is_file() and key.is_file():
        return str(cert), str(key), False
    _self_signed(cert, key, g.hostname or "localhost")
    return str(cert), str(key), True


def _self_signed(cert_path: Any, key_path: Any, hostname: str) -> None:
    import datetime
    import ipaddress
    import os

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = datetime.datetime.now(datetime.timezone.utc)
    alt = [x509.DNSName(hostname), x509.DNSName("localhost"),
           x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=825))
            .add_extension(x509.SubjectAlternativeName(alt), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path.parent.mkdir(parents=True, exist_ok=True)
    key_tmp = key_path.with_suffix(".tmp")
    with open(os.open(key_tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as fh:
        fh.write(key.private_bytes(serialization.Encoding.PEM,
                                   serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption()))
    os.replace(key_tmp, key_path)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def server_context(cert: str, key: str) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    return context
