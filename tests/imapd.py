"""A real IMAP server on 127.0.0.1 for tests: Debian's Dovecot (``dovecot-imapd``), an instance of our own with its
config, certificate, user and Maildir in a test's folder.

``imap = Dovecot(folder).start()`` (``imap.stop()`` after) listens with TLS on ``imap.port`` (and plain IMAP with
STARTTLS on ``imap.starttls_port``) for one user, ``imap.username`` / ``imap.password``, whose INBOX is a Maildir in
``folder``. The certificate is self-signed for 127.0.0.1: ``imap.ca_file`` is what a client must trust. ``append``
puts a message in the INBOX as a mail server delivering there would; ``flags`` reads back what a client left on each
message. After a failed login Dovecot makes the next logins from that address wait seconds: fail one last.

Run as root, Dovecot's own processes take its Debian users (dovecot, dovenull) and the mail user is ``nobody``,
chrooted into its Maildir's folder: pytest's folders (0700, root's) are closed to anyone else. Run as anyone else,
every process is that user and nothing is chrooted.
"""

from __future__ import annotations

import contextlib
import grp
import imaplib
import os
import pwd
import re
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Self

import pytest

from tests.servers import self_signed_certificate

DOVECOT = Path("/usr/sbin/dovecot")
_APPENDUID = re.compile(rb"APPENDUID \d+ (\d+)")
_FLAGS = re.compile(rb"UID (\d+) FLAGS \(([^)]*)\)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Dovecot:
    def __init__(self, folder: Path) -> None:
        if not DOVECOT.exists():
            pytest.skip(f"no IMAP server to test with: {DOVECOT} is missing (`make test` installs dovecot-imapd)")
        self.folder = folder
        self.host = "127.0.0.1"
        self.username = "news"
        self.password = "imap-s3cret"
        self.port = _free_port()
        self.starttls_port = _free_port()
        self.log = folder / "dovecot.log"
        self._process: subprocess.Popen[bytes] | None = None
        folder.mkdir(parents=True, exist_ok=True)
        self.ca_file, self._key = self_signed_certificate(folder)

    def _config(self) -> Path:
        home = self.folder / "mail"
        home.mkdir()
        users = self.folder / "users"
        if os.geteuid() == 0:
            for user in ("dovecot", "dovenull"):
                try:
                    pwd.getpwnam(user)
                except KeyError:
                    pytest.skip(f"Dovecot run as root needs its Debian user {user!r} (from dovecot-core)")
            nobody = pwd.getpwnam("nobody")
            os.chown(home, nobody.pw_uid, nobody.pw_gid)
            # "/./" in a home: chroot there before taking the mail user's uid, which cannot pass pytest's 0700 folders.
            entry = f"{nobody.pw_uid}:{nobody.pw_gid}::{home}/./"
            internal, login = "dovecot", "dovenull"
            # The auth process reads the passwd-file in our folder: root's, like the folder.
            services = f"valid_chroot_dirs = {home}\nservice auth {{\n  user = root\n}}\n"
        else:
            me = pwd.getpwuid(os.geteuid())
            entry = f"{me.pw_uid}:{me.pw_gid}::{home}"
            internal = login = me.pw_name
            services = (
                f"default_internal_group = {grp.getgrgid(os.getegid()).gr_name}\n"
                "first_valid_uid = 1\nfirst_valid_gid = 1\n"
                "service imap-login {\n  chroot =\n}\nservice anvil {\n  chroot =\n}\n"
            )
        users.write_text(f"{self.username}:{{PLAIN}}{self.password}:{entry}::\n", encoding="utf-8")
        (self.folder / "run").mkdir()
        config = self.folder / "dovecot.conf"
        config.write_text(
            f"base_dir = {self.folder / 'run'}\nstate_dir = {self.folder / 'run'}\ninstance_name = test-{self.port}\n"
            f"protocols = imap\nlisten = {self.host}\nlog_path = {self.log}\n"
            f"default_internal_user = {internal}\ndefault_login_user = {login}\n"
            f"ssl = yes\nssl_cert = <{self.ca_file}\nssl_key = <{self._key}\n"
            # A wrong password is answered at once (2 s by default).
            "auth_failure_delay = 0\nmail_location = maildir:~/Maildir\n"
            f"passdb {{\n  driver = passwd-file\n  args = {users}\n}}\n"
            f"userdb {{\n  driver = passwd-file\n  args = {users}\n}}\n"
            "service imap-login {\n"
            f"  inet_listener imap {{\n    port = {self.starttls_port}\n  }}\n"
            f"  inet_listener imaps {{\n    port = {self.port}\n    ssl = yes\n  }}\n"
            "}\n" + services,
            encoding="utf-8",
        )
        return config

    def start(self) -> Self:
        config = self._config()
        # -F: in the foreground, ours to stop; it logs to log_path.
        self._process = subprocess.Popen(
            [str(DOVECOT), "-F", "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                err = self._process.stderr.read().decode() if self._process.stderr else ""
                raise RuntimeError(f"dovecot exited ({self._process.returncode}): {err}{self.tail()}")
            for port in (self.port, self.starttls_port):
                try:
                    socket.create_connection((self.host, port), timeout=1).close()
                except OSError:
                    break
            else:
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"dovecot did not listen on {self.host}:{self.port} within 10 s: {self.tail()}")

    def stop(self) -> None:
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        if self._process.stderr:
            self._process.stderr.close()
        self._process = None

    def tail(self) -> str:
        """The end of Dovecot's log, for a failing assertion."""
        text = self.log.read_text(encoding="utf-8", errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-20:])

    @contextlib.contextmanager
    def _session(self) -> Iterator[imaplib.IMAP4_SSL]:
        conn = imaplib.IMAP4_SSL(self.host, self.port, ssl_context=ssl.create_default_context(cafile=self.ca_file))
        try:
            conn.login(self.username, self.password)
            yield conn
        finally:
            with contextlib.suppress(imaplib.IMAP4.error, OSError):
                conn.logout()

    def append(self, data: bytes) -> int:
        """Put ``data`` in the INBOX, unread; its UID."""
        with self._session() as conn:
            status, said = conn.append("INBOX", None, None, data)
        found = _APPENDUID.search(said[0] or b"") if status == "OK" else None
        assert found, (status, said, self.tail())
        return int(found.group(1))

    def flags(self) -> dict[int, set[str]]:
        """Each message's flags by UID, read without touching them (EXAMINE)."""
        with self._session() as conn:
            conn.select("INBOX", readonly=True)
            status, data = conn.uid("FETCH", "1:*", "(FLAGS)")
        assert status == "OK", (data, self.tail())
        found = (_FLAGS.search(line) for line in data if isinstance(line, bytes))
        return {int(m.group(1)): set(m.group(2).decode().split()) for m in found if m}


__all__ = ["DOVECOT", "Dovecot"]
