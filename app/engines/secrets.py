"""API keys for remote LLM servers: from the environment or the OS keyring, never from files.

The config file names only the environment variable (``llm.api_key_env``); the
key itself lives in that variable or in the OS keyring under service
``doppel`` with the variable's name as the user name.  ``keyring`` is an
optional dependency: without it, or without a usable keyring backend, only the
environment is read.
"""

from __future__ import annotations

import os

KEYRING_SERVICE = "doppel"


def api_key_from_env_or_keyring(env_name: str) -> str | None:
    """The key in ``$env_name``, else in the keyring (service "doppel", user ``env_name``), else None."""
    value = os.environ.get(env_name, "").strip()
    if value:
        return value
    try:
        import keyring  # optional: absent on most Linux installs

        stored = keyring.get_password(KEYRING_SERVICE, env_name)
    except Exception:  # ImportError, or a keyring backend that is locked or missing
        return None
    return (stored or "").strip() or None


def store_api_key_in_keyring(env_name: str, key: str) -> None:
    """Save ``key`` in the OS keyring so it never has to sit in a shell profile."""
    try:
        import keyring
    except ImportError as exc:
        raise RuntimeError(
            f"The 'keyring' package is not installed, so the key cannot go in the OS keyring. "
            f"Install it (pip install keyring) or set the environment variable {env_name} instead."
        ) from exc
    keyring.set_password(KEYRING_SERVICE, env_name, key)


def key_hint(env_name: str) -> str:
    """How to supply a key, for error messages."""
    return (
        f"Set the environment variable {env_name} to your API key, or store it in the OS keyring "
        f"(service '{KEYRING_SERVICE}', user '{env_name}'); never put it in the config file."
    )


def key_problem(key: str | None, env_name: str) -> str:
    """Why ``key`` cannot be sent ("" if it can).

    A key with a line break, space or non-ASCII letter cannot go in an HTTP header;
    httpx would refuse it with an error quoting the header, escaped, so ``redact``
    could not mask it.
    """
    if key is None or (key.isascii() and key.isprintable() and " " not in key):
        return ""
    return (
        f"The API key in {env_name} contains characters an HTTP header cannot carry (a space, a line break "
        "or a non-ASCII letter): it was pasted incompletely or with extra text. Set it again."
    )


def redact(text: str, secret: str | None) -> str:
    """``text`` with every occurrence of ``secret`` masked (servers sometimes echo the key)."""
    if not secret:
        return text
    return text.replace(secret, "***")
