"""Encryption at rest: Fernet (AES-128-CBC with HMAC-SHA256, from ``cryptography``) with one
key per service in ``<data>/secret-key``, mode 0600, generated at first start."""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from service.errors import ConfigurationError
from service.logs import get_logger

log = get_logger(__name__)


class UndecryptableSecret(Exception):
    """A stored value that the current key cannot decrypt (the key file was replaced)."""


class SecretBox:
    """Encrypts and decrypts secret values with the key in ``path``.

    ``load(create=False)`` checks an existing key file without making one (the app does this
    when it is built, so a damaged file is a configuration error at start); ``load()`` makes
    the key where there is none (at the service's start, or at the first use)."""

    __slots__ = ("_fernet", "path")

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fernet: Fernet | None = None

    def __repr__(self) -> str:
        return f"SecretBox(path={str(self.path)!r})"

    def load(self, *, create: bool = True) -> None:
        if self._fernet is not None:
            return
        key = self._read()
        if key is None:
            if not create:
                return
            key = self._create()
        try:
            self._fernet = Fernet(key)
        except ValueError:
            raise ConfigurationError(
                f"{self.path} does not hold a Fernet key (32 url-safe base64-encoded bytes); restore the "
                "service's key, or move the file away to make a new one (stored secrets must then be set again)"
            ) from None

    def _read(self) -> bytes | None:
        try:
            key = self.path.read_bytes().strip()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ConfigurationError(f"cannot read the secret key file {self.path}: {exc.strerror}") from None
        if not key:
            return None
        self.path.chmod(0o600)
        return key

    def _create(self) -> bytes:
        key = Fernet.generate_key()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it first (or it was empty): theirs wins
            existing = self._read()
            if existing is not None:
                return existing
            fd = os.open(self.path, os.O_WRONLY | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(key + b"\n")
        self.path.chmod(0o600)
        log.info("secret.key_created", path=str(self.path))
        return key

    @property
    def fernet(self) -> Fernet:
        self.load()
        assert self._fernet is not None
        return self._fernet

    def encrypt(self, value: str) -> bytes:
        return self.fernet.encrypt(value.encode())

    def decrypt(self, token: bytes) -> str:
        try:
            return self.fernet.decrypt(token).decode()
        except (InvalidToken, UnicodeDecodeError):
            raise UndecryptableSecret from None
