"""Code a client uploads (a tar.gz of its ``source_dir``), unpacked on the server for its jobs.

The server, not the client, holds the cloud credentials, so the code travels to the server and
each job's adapter uploads it from there to the job's storage (as it does for a local
``source_dir``). The archive is hostile input: its size, its unpacked size and its number of
files are bounded, and only plain files, folders and links that stay inside are unpacked
(``tarfile``'s ``data`` filter, PEP 706: no absolute paths, no ``..``, no devices).
Archives are stored by the SHA-256 of their bytes, per team, so a re-upload is free.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import tarfile
from pathlib import Path

from multispot.errors import ServerError
from multispot.local.provider import STAGE_MAX_FILES
from multispot.store import home_path

MAX_UPLOAD_BYTES = int(os.environ.get("MULTISPOT_SERVER_MAX_CODE_BYTES") or 64 << 20)  # compressed
MAX_UNPACKED_BYTES = 8 * MAX_UPLOAD_BYTES
CODE_ID_LENGTH = 64


def team_folder(team: str) -> str:
    """A team's name as one safe path component (a name that is not one is hashed)."""
    if re.fullmatch(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}", team):
        return team
    return "team-" + hashlib.sha256(team.encode()).hexdigest()[:16]


def code_home() -> Path:
    """Where uploaded code is unpacked: ``$MULTISPOT_SERVER_CODE``, else ``<MULTISPOT_HOME>-code``
    (outside multispot's home, which a job's ``source_dir`` may not be inside)."""
    path = Path(os.environ.get("MULTISPOT_SERVER_CODE") or f"{home_path()}-code")
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def code_root(root: Path, team: str) -> Path:
    return root / team_folder(team)


def stage(data: bytes, root: Path, team: str) -> str:
    """Unpack ``data`` (tar.gz) under ``root`` for ``team``; returns its code id (the SHA-256)."""
    code_id = hashlib.sha256(data).hexdigest()
    target = code_root(root, team) / code_id
    if target.is_dir():
        return code_id
    tmp = target.with_name(f".{code_id}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        _unpack(data, tmp)
        try:
            os.rename(tmp, target)
        except OSError:  # a concurrent upload of the same bytes won
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return code_id


def staged_dir(root: Path, team: str, code_id: str) -> Path:
    """The folder of an uploaded code id of ``team``; an unknown or malformed id is refused."""
    if len(code_id) != CODE_ID_LENGTH or not all(c in "0123456789abcdef" for c in code_id):
        raise ServerError(
            "options.code_id is not a code id: upload the code with POST /api/v1/code", 422, "options.code_id"
        )
    path = code_root(root, team) / code_id
    if not path.is_dir():
        raise ServerError(
            "options.code_id names no code uploaded by your team: upload it with POST /api/v1/code",
            422,
            "options.code_id",
        )
    return path


def _unpack(data: bytes, dest: Path) -> None:
    if not hasattr(tarfile, "data_filter"):  # PEP 706 arrived in 3.11.4 / 3.10.12
        raise ServerError("this server's Python cannot unpack archives safely: upgrade it", 501)
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
            members: list[tarfile.TarInfo] = []
            total = 0
            for member in archive:  # headers only: an oversized member stops us before its data
                total += max(member.size, 0)
                if len(members) >= STAGE_MAX_FILES or total > MAX_UNPACKED_BYTES:
                    raise ServerError(
                        f"the code archive unpacks to more than {MAX_UNPACKED_BYTES} bytes or "
                        f"{STAGE_MAX_FILES} files: keep data out of source_dir (use inputs)",
                        413,
                        "code",
                    )
                members.append(member)
            archive.extractall(dest, members=members, filter="data")
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise ServerError(f"the code is not a readable tar.gz archive: {exc}", 422, "code") from None
