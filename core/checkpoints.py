"""Signed audit checkpoints: tamper evidence that does not live in the registry file.

The audit chain (``core.registry``) is an unkeyed SHA-256 chain kept in the same SQLite file
as its head, so whoever can write the file can rewrite history and recompute every hash. A
checkpoint is what AWS CloudTrail's digest files are to its logs: the chain's length and head
hash at one moment, signed with an Ed25519 key that is kept outside the registry, appended to a
file elsewhere (and printed, for a remote log). ``Registry.verify_audit(checkpoints=...)``
then proves that every checkpointed prefix of the log is unchanged: a history rewritten or cut
after a checkpoint no longer reaches the signed head, however its hashes were recomputed.

A checkpoint is one JSON line::

    {"v": 1, "registry": "<id>", "entries": 42, "head": "<sha256 hex>", "at": "<UTC>",
     "key": "<first 16 hex of the public key's SHA-256>", "sig": "<base64 Ed25519 signature>"}

signed over ``modeldeck-audit-checkpoint/1\\n<registry>\\n<entries>\\n<head>\\n<at>\\n``. The
registry id is a random id kept in the registry's meta table (so checkpoints of several
registries can share a file, and a checkpoint of one never vouches for another).

The private key is ``$MODELDECK_AUDIT_KEY`` (a path) or ``audit-key.pem`` in the XDG config
folder, created on first use with mode 0600 (a key readable by others is refused), its public
key beside it as ``.pub``, which is what verifiers need (``--public-key``). ``cryptography`` is
imported only here, only when a checkpoint is signed or checked.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import stat
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modeldeck.core import paths
from modeldeck.core.errors import ModeldeckError
from modeldeck.core.textfmt import one_line, utcnow

KEY_ENV = "MODELDECK_AUDIT_KEY"
KEY_FILE = "audit-key.pem"
MAGIC = "modeldeck-audit-checkpoint/1"
LINE_LIMIT = 4096  # bytes of one checkpoint line


class CheckpointError(ModeldeckError):
    """A key or checkpoint file that cannot be used; one line naming the file."""


@dataclass(frozen=True)
class Checkpoint:
    registry: str
    entries: int
    head: str
    at: str
    key: str = ""
    sig: str = ""
    line: int = 0  # where it was read (1-based), 0 when made here

    def payload(self) -> bytes:
        return f"{MAGIC}\n{self.registry}\n{self.entries}\n{self.head}\n{self.at}\n".encode()

    def to_line(self) -> str:
        return json.dumps({"v": 1, "registry": self.registry, "entries": self.entries, "head": self.head,
                           "at": self.at, "key": self.key, "sig": self.sig}, separators=(",", ":"))

    def describe(self) -> str:
        return f"checkpoint of {self.entries} entries, head {self.head[:16]}, signed {self.at[:19].replace('T', ' ')} UTC"


# ---------------------------------------------------------------------------------------------
# keys


def key_path() -> Path:
    """The signing key: ``$MODELDECK_AUDIT_KEY``, else ``audit-key.pem`` in the XDG config folder."""
    env = os.environ.get(KEY_ENV, "").strip()
    return Path(env).expanduser() if env else paths.config_dir() / KEY_FILE


def public_key_path(key: Path) -> Path:
    return key.with_name(key.name.removesuffix(".pem") + ".pub")


def load_or_create_key(path: Path | None = None) -> Any:
    """The Ed25519 private key at ``path`` (default :func:`key_path`), created on first use
    (mode 0600, its public key beside it as ``.pub``). A key file that others can read or
    write is refused, as ssh refuses one."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    path = path or key_path()
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return _create_key(path)
    except OSError as e:
        raise CheckpointError(f"audit key {path}: {e.strerror or e}") from None
    if not stat.S_ISREG(st.st_mode):
        raise CheckpointError(f"audit key {path}: not a regular file")
    if st.st_mode & 0o077:
        raise CheckpointError(f"audit key {path} is readable or writable by others (mode {st.st_mode & 0o777:04o}); "
                              f"chmod 600 {path}")
    try:
        data = path.read_bytes()[:16384]
        key = serialization.load_pem_private_key(data, password=None)
    except (OSError, ValueError, TypeError) as e:
        raise CheckpointError(f"audit key {path}: not a readable PEM private key ({one_line(e, 80)})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise CheckpointError(f"audit key {path}: not an Ed25519 key")
    return key


def _create_key(path: Path) -> Any:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    # Written whole to a private temporary file, then linked into place: a concurrent first use
    # (two cron reports) sees no key or a complete one, never a half-written file, and the
    # link fails when another process won, whose key is then used.
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(prefix=".audit-key-", dir=path.parent)  # mode 0600
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
            f.flush()
            os.fsync(f.fileno())
        os.link(tmp, path)
    except FileExistsError:  # another process made it meanwhile: use that one
        return load_or_create_key(path)
    except OSError as e:
        raise CheckpointError(f"cannot create the audit key {path}: {e.strerror or e}") from None
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    pub = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    with contextlib.suppress(OSError):
        public_key_path(path).write_bytes(pub)
    return key


def load_public_key(path: str | os.PathLike[str]) -> Any:
    """An Ed25519 public key: a PEM file (``audit-key.pub``), or a file holding the raw 32
    bytes in base64 on one line."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    p = Path(path)
    try:
        data = p.read_bytes()[:16384]
    except OSError as e:
        raise CheckpointError(f"public key {p}: {e.strerror or e}") from None
    try:
        if b"-----BEGIN" in data:
            key = serialization.load_pem_public_key(data)
        else:
            key = Ed25519PublicKey.from_public_bytes(base64.b64decode(data.strip(), validate=True))
    except (ValueError, TypeError) as e:
        raise CheckpointError(f"public key {p}: not a readable Ed25519 public key ({one_line(e, 80)})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise CheckpointError(f"public key {p}: not an Ed25519 key")
    return key


def key_id(public_key: Any) -> str:
    from cryptography.hazmat.primitives import serialization

    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


# ---------------------------------------------------------------------------------------------
# signing, files, checking


def sign(private_key: Any, registry: str, entries: int, head: str, at: str | None = None) -> Checkpoint:
    cp = Checkpoint(registry=registry, entries=int(entries), head=head, at=at or utcnow(),
                    key=key_id(private_key.public_key()))
    sig = base64.b64encode(private_key.sign(cp.payload())).decode()
    return Checkpoint(cp.registry, cp.entries, cp.head, cp.at, cp.key, sig)


def signature_ok(public_key: Any, cp: Checkpoint) -> bool:
    from cryptography.exceptions import InvalidSignature

    try:
        public_key.verify(base64.b64decode(cp.sig, validate=True), cp.payload())
    except (InvalidSignature, ValueError):
        return False
    return True


def default_file(registry: str | os.PathLike[str]) -> Path:
    """Where ``audit checkpoint`` and ``--report`` append by default: one file per registry
    in the XDG state folder (keep a copy elsewhere too: see the README)."""
    reg = Path(registry).expanduser().resolve()
    return (paths.state_dir() / "checkpoints"
            / f"{paths.slug(reg.stem)}-{hashlib.sha256(str(reg).encode()).hexdigest()[:10]}.jsonl")


def append(path: Path, cp: Checkpoint) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as f:
            f.write(cp.to_line() + "\n")
    except OSError as e:
        raise CheckpointError(f"cannot write the checkpoint file {path}: {e.strerror or e}") from None


def read(path: str | os.PathLike[str], *, missing_ok: bool = False) -> list[Checkpoint]:
    """Every checkpoint in a file, in order. A line that is not a checkpoint is an error
    naming the line (an edited file is not silently skipped)."""
    p = Path(path)
    try:
        st = os.stat(p)
        if not stat.S_ISREG(st.st_mode):
            raise CheckpointError(f"checkpoint file {p}: not a regular file")
        if st.st_size > 256 << 20:
            raise CheckpointError(f"checkpoint file {p}: larger than 256 MiB")
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        if missing_ok:
            return []
        raise CheckpointError(f"checkpoint file {p}: no such file") from None
    except UnicodeDecodeError:
        raise CheckpointError(f"checkpoint file {p}: not UTF-8 text") from None
    except OSError as e:
        raise CheckpointError(f"checkpoint file {p}: {e.strerror or e}") from None
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip():
            out.append(_parse_line(line, f"{p} line {n}", n))
    return out


def _parse_line(line: str, where: str, n: int) -> Checkpoint:
    if len(line) > LINE_LIMIT:
        raise CheckpointError(f"{where}: not a checkpoint (longer than {LINE_LIMIT} characters)")
    try:
        d = json.loads(line)
    except (ValueError, RecursionError):
        raise CheckpointError(f"{where}: not a checkpoint (not JSON)") from None
    ok = (isinstance(d, dict) and d.get("v") == 1 and isinstance(d.get("entries"), int)
          and not isinstance(d.get("entries"), bool) and d["entries"] >= 0
          and all(isinstance(d.get(k), str) for k in ("registry", "head", "at", "key", "sig")))
    if not ok:
        raise CheckpointError(f"{where}: not a checkpoint (fields v, registry, entries, head, at, key, sig)")
    return Checkpoint(d["registry"], d["entries"], d["head"], d["at"], d["key"], d["sig"], n)


def check_signatures(checkpoints: Iterable[Checkpoint], public_key: Any, source: str) -> list[str]:
    """Why each checkpoint whose signature does not verify with ``public_key`` is refused."""
    return [f"{source} line {cp.line}: the signature does not verify with this public key (forged, edited, or "
            f"signed with another key)" for cp in checkpoints if not signature_ok(public_key, cp)]


def newest_own(checkpoints: Iterable[Checkpoint], registry: str | None, public_key: Any) -> list[Checkpoint]:
    """The checkpoints of ``registry`` signed with ``public_key``'s key (others are not ours to
    judge: another registry's, or an older key's)."""
    kid = key_id(public_key)
    return [cp for cp in checkpoints if cp.registry == registry and cp.key == kid]


def checkpoint(reg: Any, path: Path | None = None, *, key: Path | None = None) -> tuple[Checkpoint | None, Any]:
    """Verify ``reg``'s audit chain against the newest checkpoint this key signed in ``path``
    (default :func:`default_file`), then sign its head and append the new checkpoint there.
    Returns (the checkpoint, the VerifyResult), or (None, the broken result): a broken chain is
    never signed. The newest earlier checkpoint is enough here: each one was written only after
    the one before it held."""
    private = load_or_create_key(key)
    public = private.public_key()
    path = path or default_file(reg.path)
    registry = reg.registry_id(create=True)
    if registry is None:
        raise CheckpointError(f"{reg.path}: opened read-only and never checkpointed: run modeldeck audit checkpoint "
                              f"once with write access")
    earlier = newest_own(read(path, missing_ok=True), registry, public)
    newest = max(earlier, key=lambda cp: (cp.entries, cp.line), default=None)
    if newest is not None and not signature_ok(public, newest):
        from modeldeck.core.registry import VerifyResult

        why = check_signatures([newest], public, str(path))[0]
        return None, VerifyResult(False, 0, None, why)
    result = reg.verify_audit([newest] if newest is not None else [])
    if not result.ok:
        return None, result
    cp = sign(private, registry, result.checked, result.head)
    append(path, cp)
    return cp, result
