"""Hyperliquid credentials from the environment, never logged, never stored in the database.

* ``MM_HYPERLIQUID_SECRET_KEY``: the API wallet's private key (hex), or ``MM_HYPERLIQUID_SECRET_KEY_FILE``: a file
  holding it (a mounted secret); exactly one of the two.
* ``MM_HYPERLIQUID_ACCOUNT_ADDRESS``: the account (master) address whose orders and positions these are; defaults
  to the key's own address (an API wallet trading for a master account needs it set).

The key lives only inside :class:`Credentials`, whose ``repr``/``str`` show the address alone.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from eth_account import Account

_HEX_KEY = re.compile(r"^(0x)?[0-9a-fA-F]{64}$")
_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")


class CredentialsError(ValueError):
    """Missing or malformed credentials; the message names the variable, never the value."""


class Credentials:
    __slots__ = ("_wallet", "account_address")

    def __init__(self, secret_key: str, account_address: str | None = None) -> None:
        key = secret_key.strip()
        if not _HEX_KEY.match(key):
            raise CredentialsError("MM_HYPERLIQUID_SECRET_KEY must be 32 bytes of hex (64 hex digits, optional 0x)")
        self._wallet = Account.from_key(key if key.startswith("0x") else "0x" + key)
        if account_address is not None and not _ADDRESS.match(account_address):
            raise CredentialsError("MM_HYPERLIQUID_ACCOUNT_ADDRESS must be 0x followed by 40 hex digits")
        self.account_address = account_address or self._wallet.address

    @property
    def signer_address(self) -> str:
        return self._wallet.address

    @property
    def wallet(self):  # the eth_account LocalAccount, for signing only
        return self._wallet

    def __repr__(self) -> str:
        return f"Credentials(account={self.account_address}, signer={self._wallet.address}, key=<redacted>)"

    __str__ = __repr__

    def __reduce__(self):  # never pickled (celery, caches): the key must not leave the process
        raise TypeError("Credentials cannot be pickled")


def credentials_from_env(env: dict[str, str] | None = None) -> Credentials:
    env = os.environ if env is None else env
    key, key_file = env.get("MM_HYPERLIQUID_SECRET_KEY"), env.get("MM_HYPERLIQUID_SECRET_KEY_FILE")
    if key and key_file:
        raise CredentialsError("set only one of MM_HYPERLIQUID_SECRET_KEY and MM_HYPERLIQUID_SECRET_KEY_FILE")
    if key_file:
        try:
            key = Path(key_file).read_text().strip()
        except OSError as exc:
            raise CredentialsError(f"MM_HYPERLIQUID_SECRET_KEY_FILE: cannot read the file ({exc.strerror})") from None
    if not key:
        raise CredentialsError("MM_HYPERLIQUID_SECRET_KEY or MM_HYPERLIQUID_SECRET_KEY_FILE is required")
    return Credentials(key, env.get("MM_HYPERLIQUID_ACCOUNT_ADDRESS") or None)
