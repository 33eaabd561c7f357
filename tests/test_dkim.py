"""DKIM: the digest and the one-off mails signed with the key the environment names, checked with dkimpy against
the public key as DNS would publish it; the List-Unsubscribe pair is covered (RFC 8058 section 4)."""

from __future__ import annotations

import base64
import re
import subprocess
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import dkim
import pytest

from ingest.store import Store
from newsletter import cli
from tests.conftest import write_config
from tests.maildata import W48_DUE, W48_START, confirmed, page_story
from tests.smtpd import SmtpSink

RunCli = Callable[..., tuple[int, str, str]]
SELECTOR = "news2026"
DOMAIN = "news.example.org"


def _keys(folder: Path) -> tuple[Path, bytes]:
    """A 2048-bit RSA private key file, and its DNS TXT record (v=DKIM1; k=rsa; p=...)."""
    key = folder / "dkim.pem"
    subprocess.run(
        ["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", str(key)],
        check=True,
        capture_output=True,
    )
    der = subprocess.run(
        ["openssl", "pkey", "-in", str(key), "-pubout", "-outform", "DER"], check=True, capture_output=True
    ).stdout
    return key, b"v=DKIM1; k=rsa; p=" + base64.b64encode(der)


def _verify(message: bytes, record: bytes) -> bool:
    def dns(name: bytes, timeout: int = 5) -> bytes | None:
        return record if name == f"{SELECTOR}._domainkey.{DOMAIN}.".encode() else None

    return bool(dkim.verify(message, dnsfunc=dns))


def test_every_message_is_signed_and_verifies(
    db_url: str,
    tmp_path: Path,
    smtp_sink: SmtpSink,
    run_cli: RunCli,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    key, record = _keys(tmp_path)
    with Store.open(db_url) as store:
        page_story(store, "A story of the week", first_seen=W48_START + timedelta(days=1))
        confirmed(store, "a@example.org", "b@example.org")
    cfg = str(
        write_config(
            tmp_path,
            f'\n[publish]\nbase_url = "https://{DOMAIN}/"\n\n[mail]\ntransport = "smtp"\nhost = "{smtp_sink.host}"\n'
            f'port = {smtp_sink.port}\nfrom_address = "Oncology digest <digest@{DOMAIN}>"\n'
            f'dkim_selector = "{SELECTOR}"\ndkim_domain = "{DOMAIN}"\n',
        )
    )
    monkeypatch.setenv("NEWSLETTER_DKIM_KEY_FILE", str(key))
    monkeypatch.setattr(cli, "now", lambda: W48_DUE)
    code, _, err = run_cli("--config", cfg, "digest", "send")
    assert code == 0, err
    code, _, err = run_cli("--config", cfg, "digest", "test-send", "editor@example.org")
    assert code == 0, err
    assert len(smtp_sink.messages) == 3
    for got in smtp_sink.messages:
        assert got.data.startswith(b"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=news.example.org;")
        assert _verify(got.data, record)
        signed = got.parsed()["DKIM-Signature"]
        names = set(re.search(r"h=([^;]+)", str(signed)).group(1).replace(" ", "").lower().split(":"))  # type: ignore[union-attr]
        assert {"from", "to", "subject", "date", "message-id", "list-id"} <= names
        assert {"list-unsubscribe", "list-unsubscribe-post"} <= names  # RFC 8058: the one-click pair is signed
    # The checks can fail: a changed List-Unsubscribe, or a From added after signing, no longer verifies.
    first = smtp_sink.messages[0].data
    assert not _verify(first.replace(b"List-Unsubscribe: <https://", b"List-Unsubscribe: <http://", 1), record)
    forged = first.replace(b"\r\nFrom: ", b"\r\nFrom: Bank <bank@example.com>\r\nFrom: ", 1)
    assert not _verify(forged, record)


def test_a_missing_or_bad_key_is_a_config_error(
    tmp_path: Path, run_cli: RunCli, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = str(write_config(tmp_path, f'[mail]\ndkim_selector = "{SELECTOR}"\ndkim_domain = "{DOMAIN}"\n'))
    code, _, err = run_cli("--config", cfg, "digest", "test-send", "editor@example.org")
    assert code == 2
    assert "NEWSLETTER_DKIM_KEY_FILE must name the file of the DKIM private key" in err
    (tmp_path / "bad.pem").write_text("not a key", encoding="utf-8")
    monkeypatch.setenv("NEWSLETTER_DKIM_KEY_FILE", str(tmp_path / "bad.pem"))
    code, _, err = run_cli("--config", cfg, "digest", "test-send", "editor@example.org")
    assert code == 2
    assert f"NEWSLETTER_DKIM_KEY_FILE={tmp_path / 'bad.pem'}: not a usable PEM private key for DKIM" in err
    assert "Traceback" not in err
