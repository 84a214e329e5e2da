"""Cost per message of DKIM signing (campaigns.content.dkim.Signer.sign).

Builds N messages of bench/mime_build.py (the ~5.7 KB newsletter, and the issue's ~1.5 KB
message) with our MessageBuilder and our delivery header, then signs each: RSA 2048
(rsa-sha256, the RSA operation by OpenSSL), RSA + Ed25519 (dual signing), and, for
reference, RSA by dkimpy's own pure-Python arithmetic (on N/10 messages: it is slow). Figures
are CPU time of this process per message, medians of 3 rounds. Run:

    .venv/bin/python bench/dkim_sign.py [N]
"""
from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

import dkim  # noqa: E402
from dkim import crypto  # noqa: E402

from campaigns.content import dkim as signing  # noqa: E402
from campaigns.content.mime import MessageBuilder, make_message_id  # noqa: E402
from campaigns.content.rendering import compile_template  # noqa: E402
from campaigns.headers import DELIVERY_HEADER  # noqa: E402
from campaigns.settings import DkimConfig  # noqa: E402
from mime_build import FROM, MESSAGES, _contexts  # noqa: E402


def messages(kind: str, count: int) -> list[bytes]:
    subject, html = MESSAGES[kind]
    template = compile_template(kind, subject, html, None)
    builder = MessageBuilder(from_addr=FROM)
    out = []
    for i, ctx in enumerate(_contexts(count)):
        rendered = template.render(ctx)
        data = builder.build(to=ctx["contact"]["email"], subject=rendered.subject,  # type: ignore[index]
                             html=rendered.html, text=rendered.text,
                             message_id=make_message_id(f"d{i}", "bottega.example.it"),
                             unsubscribe_url=str(ctx["unsubscribe_url"]),
                             headers={DELIVERY_HEADER: f"{i}.token"})
        out.append(data)
    return out


def per_message_ms(signer: signing.Signer, batch: list[bytes], rounds: int = 3) -> float:
    runs = []
    for _ in range(rounds):
        start = time.process_time()
        for data in batch:
            signer.sign(data)
        runs.append((time.process_time() - start) * 1000 / len(batch))
    return statistics.median(runs)


def main(count: int) -> None:
    folder = Path(tempfile.mkdtemp(prefix="dkim-bench-"))
    rsa = signing.generate(signing.RSA, "bench", folder / "rsa.pem")
    ed = signing.generate(signing.ED25519, "bench-ed", folder / "ed.pem")
    domain = "bottega.example.it"
    rsa_only = signing.Signer({domain: DkimConfig(domain, "bench", rsa.path)})
    dual = signing.Signer({domain: DkimConfig(domain, "bench", rsa.path, "bench-ed", ed.path)})
    print(f"OpenSSL for the RSA operation: {signing.openssl()}; N={count} messages per variant")
    for kind in ("newsletter", "small"):
        batch = messages(kind, count)
        size = sum(map(len, batch)) / len(batch)
        assert all(rsa_only.sign(m).startswith(b"DKIM-Signature:") for m in batch[:3])
        results = {"rsa-sha256 (OpenSSL)": per_message_ms(rsa_only, batch),
                   "rsa-sha256 + ed25519-sha256": per_message_ms(dual, batch)}
        fast = dkim.RSASSA_PKCS1_v1_5_sign, dkim.parse_pem_private_key
        dkim.RSASSA_PKCS1_v1_5_sign = crypto.RSASSA_PKCS1_v1_5_sign
        dkim.parse_pem_private_key = crypto.parse_pem_private_key
        try:
            results["rsa-sha256 (dkimpy pure Python)"] = per_message_ms(
                rsa_only, batch[:max(1, count // 10)])
        finally:
            dkim.RSASSA_PKCS1_v1_5_sign, dkim.parse_pem_private_key = fast
        print(f"{kind} ({size / 1024:.1f} KB a message):")
        for name, ms in results.items():
            print(f"  {name:34s} {ms:7.3f} ms/message  {1000 / ms:8.0f} messages/s a core")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000)
