"""`campaigns dkim`: the keys that sign our messages (campaigns.content.dkim)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer

from campaigns.cli.common import handled, out

app = typer.Typer(help="DKIM: make the keys that sign messages of a From domain.",
                  no_args_is_help=True)


def _data_dir() -> Path:
    """The data dir as settings find it, without loading campaigns.toml (whose [dkim]
    table may already name the key this command is about to make)."""
    return Path(os.environ.get("CAMPAIGNS_DATA_DIR", ".campaigns")).resolve()


@app.command("keygen")
@handled
def keygen(domain: str,
           selector: str = typer.Option(..., "--selector", help="the DNS label of this key, "
                                        "such as news2026 (S._domainkey.DOMAIN)"),
           key_file: Optional[Path] = typer.Option(
               None, "--key-file", help="where to write the RSA key (default: "
               "DATA_DIR/dkim/DOMAIN.SELECTOR.pem)"),
           ed25519: bool = typer.Option(False, "--ed25519",
                                        help="also an Ed25519 key, for dual signing"),
           ed25519_selector: Optional[str] = typer.Option(
               None, "--ed25519-selector", help="its selector (default: SELECTOR-ed25519)"),
           force: bool = typer.Option(False, "--force", help="replace existing key files")
           ) -> None:
    """Write a 2048-bit RSA key (and with --ed25519 an Ed25519 one), mode 0600; print the
    DNS TXT record(s) to publish and the [dkim] table to add to campaigns.toml."""
    from campaigns.content.dkim import ED25519, RSA, generate, txt_record, valid_selector
    from campaigns.errors import InputError

    domain = domain.strip().lower().rstrip(".")
    if "@" in domain or "." not in domain:
        raise InputError(f"'{domain}': expected a domain such as example.it", field="DOMAIN")
    ed_selector = ed25519_selector or f"{selector}-ed25519"
    for given in (selector, ed_selector):
        if not valid_selector(given):
            raise InputError(f"'{given}': expected a DNS label such as news2026",
                             field="--selector")
    rsa_path = (key_file or _data_dir() / "dkim" / f"{domain}.{selector}.pem").absolute()
    wanted = [(RSA, selector, rsa_path)]
    if ed25519:
        ed_path = rsa_path.with_name(f"{domain}.{ed_selector}.pem") if key_file is None \
            else rsa_path.with_name(f"{rsa_path.stem}.ed25519{rsa_path.suffix or '.pem'}")
        wanted.append((ED25519, ed_selector, ed_path))
    taken = [str(path) for _, _, path in wanted if path.exists()]
    if taken and not force:   # before writing either: never half a pair
        raise InputError(f"{', '.join(taken)} exists: not replaced (give --force to replace "
                         "it; the DNS record must then change too)")
    keys = [generate(kind, sel, path, force=force) for kind, sel, path in wanted]
    toml = [f'[dkim."{domain}"]', f'selector = "{selector}"', f'key_file = "{rsa_path}"']
    for key in keys:
        name, value, strings = txt_record(domain, key)
        out.print(f"wrote {key.path} ({'RSA 2048-bit' if key.kind == RSA else 'Ed25519'}, "
                  "mode 0600)", markup=False)
        out.print(f"publish this DNS TXT record:\n  name:  {name}\n  value: {value}",
                  markup=False)
        quoted = " ".join(f'"{part}"' for part in strings)
        out.print(f"  zone file line: {name}. 3600 IN TXT ( {quoted} )\n", markup=False)
        if key.kind == ED25519:
            toml += [f'ed25519_selector = "{key.selector}"', f'ed25519_key_file = "{key.path}"']
    out.print("add to campaigns.toml:\n" + "\n".join(toml), markup=False)
