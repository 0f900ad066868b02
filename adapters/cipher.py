"""Events encrypted at rest: the library's AES-GCM cipher with a key ring.

eventsourcing encrypts each event's whole stored state (its fields; not the aggregate id,
version or topic) when a cipher is configured (`CIPHER_TOPIC`, `CIPHER_KEY`). `KeyRing`
wraps `eventsourcing.cryptography.AESCipher` so that keys can be rotated and a store
can hold events written before a key was set:

* new events are written with `OCSCHED_CIPHER_KEY`, as `MARK` + the key's 4-byte id +
  the library's ciphertext (nonce, tag, data);
* an encrypted event is read with whichever configured key has its id: the current one
  or one of `OCSCHED_CIPHER_OLD_KEYS` (comma-separated);
* a state without `MARK` (written before the key was set) is read as it is.

Without any key the ring is false, so the mapper skips it (no cost per event), and
`require_key` checks at open that the newest event is not encrypted: a key removed by
mistake is one clear error instead of undecodable bytes. A wrong key is found when an
event is decrypted, and named.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from eventsourcing.persistence import Cipher, PersistenceError

if TYPE_CHECKING:
    from eventsourcing.application import Application
    from eventsourcing.utils import Environment

MARK = b"\x00ocs1"
KEY_ID_BYTES = 4
TOPIC = "ocsched.adapters.cipher:KeyRing"
KEY_SIZES = (16, 24, 32)


class CipherKeyError(PersistenceError):
    """An encrypted event this process has no key for, or a key setting that is not one."""


def key_id(key: bytes) -> bytes:
    import hashlib  # only with a key: OpenSSL costs ~4 ms of every start

    return hashlib.sha256(key).digest()[:KEY_ID_BYTES]


def parse_key(text: str, name: str) -> bytes:
    import base64  # (with binascii, only where there is a key: every command imports this)
    import binascii

    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) not in KEY_SIZES:
        raise CipherKeyError(
            f"{name} is not a key: it must be 16, 24 or 32 bytes in base64"
            " (make one with `ocsched audit new-key`)"
        )
    return key


def new_key() -> str:
    import base64
    import os

    return base64.b64encode(os.urandom(32)).decode()


class KeyRing(Cipher):
    """Encrypts with the current key (none: stores as it is); decrypts with any key of
    the ring, chosen by the id stored with the ciphertext."""

    def __init__(self, environment: Environment) -> None:
        current = environment.get("CIPHER_KEY") or ""
        old = environment.get("CIPHER_OLD_KEYS") or ""
        self._ciphers: dict[bytes, Cipher] = {}
        self._current: tuple[bytes, Cipher] | None = None
        if current:
            key = parse_key(current, "OCSCHED_CIPHER_KEY")
            self._current = (key_id(key), self._add(key))
        for text in filter(None, (part.strip() for part in old.split(","))):
            self._add(parse_key(text, "a key in OCSCHED_CIPHER_OLD_KEYS"))

    def __bool__(self) -> bool:
        return bool(self._ciphers)

    def _add(self, key: bytes) -> Cipher:
        import base64

        from eventsourcing.cryptography import AESCipher
        from eventsourcing.utils import Environment

        cipher = AESCipher(Environment(env={"CIPHER_KEY": base64.b64encode(key).decode()}))
        self._ciphers[key_id(key)] = cipher
        return cipher

    def encrypt(self, plaintext: bytes) -> bytes:
        if self._current is None:
            return plaintext
        identity, cipher = self._current
        return MARK + identity + cipher.encrypt(plaintext)

    def decrypt(self, ciphertext: bytes) -> bytes:
        if not ciphertext.startswith(MARK):
            return ciphertext
        start = len(MARK)
        identity = bytes(ciphertext[start : start + KEY_ID_BYTES])
        cipher = self._ciphers.get(identity)
        if cipher is None:
            raise CipherKeyError(_missing_key(identity, self._current))
        try:
            return cipher.decrypt(bytes(ciphertext[start + KEY_ID_BYTES :]))
        except ValueError as error:
            raise CipherKeyError(f"an encrypted event is damaged: {error}") from None


def _missing_key(identity: bytes, current: tuple[bytes, Cipher] | None) -> str:
    if current is None:
        return (
            f"the log holds events encrypted with key {identity.hex()}, and no key is"
            " configured: set OCSCHED_CIPHER_KEY (or OCSCHED_CIPHER_OLD_KEYS) to it"
        )
    return (
        f"the log holds events encrypted with key {identity.hex()}, which is neither"
        f" OCSCHED_CIPHER_KEY ({current[0].hex()}) nor in OCSCHED_CIPHER_OLD_KEYS:"
        " add that key to OCSCHED_CIPHER_OLD_KEYS"
    )


def require_key(log: Application) -> None:
    """Raise CipherKeyError when no key is configured and the newest event is encrypted."""
    if not isinstance(log.mapper.cipher, KeyRing) or log.mapper.cipher:
        return
    recorder = log.recorder
    newest = recorder.max_notification_id()
    if not newest:
        return
    notifications = recorder.select_notifications(start=newest, limit=1)
    state = notifications[0].state if notifications else b""
    if state.startswith(MARK):
        start = len(MARK)
        raise CipherKeyError(_missing_key(bytes(state[start : start + KEY_ID_BYTES]), None))


def cipher_env(key: str | None, old_keys: str | None) -> dict[str, str]:
    """The library's settings for the ring. Given under the application's own prefix
    (OCSCHED_…), they win over the process environment, which the library reads too."""
    return {
        "OCSCHED_CIPHER_TOPIC": TOPIC,
        "OCSCHED_CIPHER_KEY": key or "",
        "OCSCHED_CIPHER_OLD_KEYS": old_keys or "",
    }
