"""The key the sandbox's signed assertions (`flags.probes`) are made and checked with.

`KAIZEN_SANDBOX_SECRET` when it is set: in production the same value goes to Kaizen's workers and
to the owner's sandbox. Otherwise each install makes a random one on first use and keeps it in
`var/sandbox_secret` (mode 0600), so that every process of one `make run` shares it. It is never
derived from SECRET_KEY: the development default of that key is public, so anything derived from
it lets anyone forge a probe.
"""

import os
import secrets
from pathlib import Path

FILE_NAME = "sandbox_secret"
SECRET_BYTES = 32
MIN_LENGTH = 32  # hex characters: a truncated or hand-edited file is refused, not trusted


def sandbox_secret(*, configured: str, var_dir: Path) -> str:
    """The configured secret, else this install's own (made on first use, then reused)."""
    if configured:
        return configured
    path = var_dir / FILE_NAME
    try:
        return _read(path)
    except FileNotFoundError:
        return _create(path)


def _read(path: Path) -> str:
    value = path.read_text().strip()
    if len(value) < MIN_LENGTH:
        raise RuntimeError(f"{path} holds no usable sandbox secret; delete it to make a new one.")
    return value


def _create(path: Path) -> str:
    """Write to a private temporary file, then link it into place: the processes `make run` starts
    together race here, and a link either wins whole or finds the winner's complete file."""
    value = secrets.token_hex(SECRET_BYTES)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w") as handle:
            handle.write(value + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(temporary, path)
        except FileExistsError:
            return _read(path)
        return value
    finally:
        temporary.unlink(missing_ok=True)
