"""Ship the running multispot to a job, so the job's runtime needs no package index.

A cloud job starts from an image that has no multispot (and usually no route to a package index
that would). At submit, each adapter builds the wheels here into the code it uploads (the
SageMaker code channel, the Vertex staging bucket, the Azure ML code asset), and the job's entry
installs them offline before the user's command runs (``install_command``):

- ``multispot-<version>+<content hash>-py3-none-any.whl``: the running multispot *and* the
  first-party adapter packages, built from the files that are imported right now (an editable
  checkout or an installed wheel alike), with this distribution's entry points, so the job runs
  exactly the code that submitted it;
- ``fsspec-<version>-py3-none-any.whl``: the runtime's one third-party need, rebuilt from the
  installed distribution; installed only where the image lacks fsspec.

Both are pure Python. Nothing else is shipped: inside a job, ``multispot.runtime`` imports only
the standard library, fsspec and multispot (a test holds it to that). Wheels are written with
the standard library's ``zipfile`` (the wheel format: PEP 427, RECORD hashes per PEP 376), so
building needs neither a build backend nor a network.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import zipfile
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path

DIST = "multispot"
WHEEL_DIR = "multispot-wheels"  # the folder, inside the shipped code, that holds the wheels
RUNTIME_DEPS = ("fsspec",)  # what multispot.runtime imports besides the standard library
_SKIP_DIRS = {"__pycache__", ".mypy_cache", ".pytest_cache"}
_SKIP_SUFFIXES = (".pyc", ".pyo")


def build_wheels(dest: Path) -> list[Path]:
    """Write the wheels a job needs into ``dest`` (created); returns their paths, multispot first."""
    dest.mkdir(parents=True, exist_ok=True)
    return [_multispot_wheel(dest), *(_installed_wheel(name, dest) for name in RUNTIME_DEPS)]


def install_command(wheel_dir: str, python: str = "python3") -> str:
    """The POSIX shell line a job's entry runs before the user's command: the shipped multispot
    replaces any other (the job must run the code that submitted it), a shipped dependency is
    installed only where the image lacks it. ``--no-index``: it never reaches for a package index."""
    pip = f"{python} -m pip install --quiet --no-index --no-deps --disable-pip-version-check"
    deps = " ".join(
        f'{python} -c "import {name}" 2>/dev/null || {pip} "{wheel_dir}"/{name}-*.whl;'
        for name in RUNTIME_DEPS
    )
    return f'{deps} {pip} --force-reinstall "{wheel_dir}"/{DIST}-*.whl'


# --------------------------------------------------------------------------- multispot itself


def _top_level_packages() -> list[Path]:
    """The folders of multispot and of every package this distribution's entry points name."""
    import multispot

    names = {"multispot"}
    try:
        names |= {ep.module.split(".")[0] for ep in metadata.distribution(DIST).entry_points}
    except metadata.PackageNotFoundError:
        pass
    folders = [Path(multispot.__file__).parent]
    for name in sorted(names - {"multispot"}):
        spec = __import__("importlib.util").util.find_spec(name)
        if spec is not None and spec.origin is not None:
            folders.append(Path(spec.origin).parent)
    return folders


def _files_under(folder: Path) -> Iterable[tuple[str, Path]]:
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS)
        for name in sorted(files):
            if not name.endswith(_SKIP_SUFFIXES):
                path = Path(root) / name
                yield f"{folder.name}/{path.relative_to(folder).as_posix()}", path


def _multispot_wheel(dest: Path) -> Path:
    files = [item for folder in _top_level_packages() for item in _files_under(folder)]
    content = hashlib.sha256()
    for arcname, path in files:
        content.update(arcname.encode() + b"\0" + path.read_bytes())
    version = f"{_installed_version(DIST)}+g{content.hexdigest()[:12]}"  # the exact code shipped
    entry_points = _entry_points_text()
    members = [(arcname, path.read_bytes()) for arcname, path in files]
    return _write_wheel(dest, DIST, version, members, entry_points)


def _installed_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "0"


def _entry_points_text() -> str:
    try:
        eps = metadata.distribution(DIST).entry_points
    except metadata.PackageNotFoundError:
        return ""
    groups: dict[str, list[str]] = {}
    for ep in eps:
        groups.setdefault(ep.group, []).append(f"{ep.name} = {ep.value}")
    return "".join(
        f"[{group}]\n" + "\n".join(sorted(lines)) + "\n\n" for group, lines in sorted(groups.items())
    )


# --------------------------------------------------------------------------- a dependency


def _installed_wheel(name: str, dest: Path) -> Path:
    """A pure-Python distribution rebuilt as a wheel from its installed files (RECORD)."""
    dist = metadata.distribution(name)
    members: list[tuple[str, bytes]] = []
    for file in dist.files or ():
        posix = file.as_posix()
        if posix.endswith(_SKIP_SUFFIXES) or ".dist-info/" in posix or posix.startswith(".."):
            continue
        if any(part in _SKIP_DIRS for part in file.parts):
            continue
        members.append((posix, Path(str(file.locate())).read_bytes()))
    if not members:
        raise RuntimeError(f"{name} is installed without a file list: cannot ship it")
    return _write_wheel(dest, dist.metadata["Name"].replace("-", "_"), dist.version, members, "")


# --------------------------------------------------------------------------- the wheel format


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def _write_wheel(
    dest: Path, name: str, version: str, members: list[tuple[str, bytes]], entry_points: str
) -> Path:
    info = f"{name}-{version}.dist-info"
    meta = [
        (f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode()),
        (
            f"{info}/WHEEL",
            b"Wheel-Version: 1.0\nGenerator: multispot.ship\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        ),
    ]
    if entry_points:
        meta.append((f"{info}/entry_points.txt", entry_points.encode()))
    everything = [*members, *meta]
    record = "".join(f"{arc},{_record_hash(data)},{len(data)}\n" for arc, data in everything)
    record += f"{info}/RECORD,,\n"
    path = dest / f"{name}-{version}-py3-none-any.whl"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as wheel:
        for arcname, data in [*everything, (f"{info}/RECORD", record.encode())]:
            entry = zipfile.ZipInfo(arcname, date_time=(1980, 1, 1, 0, 0, 0))  # reproducible
            entry.external_attr = 0o644 << 16
            entry.compress_type = zipfile.ZIP_DEFLATED
            wheel.writestr(entry, data)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(buffer.getvalue())
    tmp.replace(path)
    return path
