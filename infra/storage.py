"""Storage is a URL: every stage output, per-unit cache and manifest goes through here.

A location is a string: a local path (`runs/x`, `/data/x`, `file:///data/x`) or any fsspec URL
(`s3://bucket/run`, `gs://bucket/run`). Object stores have no atomic directory rename, so a
writer never renames a folder into place: it writes its files under a fresh attempt prefix and
commits by writing one small JSON document last (a stage's `manifest.json`, a unit's
`stats.json`) that names them. A reader trusts only what such a document names.

Endpoints and credentials come the standard way: `AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID` /
`AWS_SECRET_ACCESS_KEY`, an instance role, or `storage.options` in the recipe; none of them is
ever written to a manifest or a log. Local Ray workers inherit the driver's environment; the
nodes of a real cluster bring their own credentials.

Workers compute with local files: `local_file`/`local_folder` copy an object into a node-local
cache once (committed files never change, so the URL is the cache key), and `writing(url)`
gives a local folder whose files land under `url` when the block ends.
"""

import hashlib
import json
import os
import posixpath
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path

import fsspec

from infra.files import atomic_write, file_digest

OPTIONS_ENV = "TOKENMILL_STORAGE_OPTIONS"  # JSON: the recipe's storage options, inherited by local Ray workers
CACHE_ENV = "TOKENMILL_CACHE"  # node-local cache root (default ~/.cache/tokenmill)


def is_remote(location: str | Path) -> bool:
    text = str(location)
    return "://" in text and not text.startswith("file://")


def normalize(location: str | Path) -> str:
    """A local path made absolute (`file://` stripped), or a remote URL without a trailing slash."""
    text = str(location)
    if is_remote(text):
        return text.rstrip("/")
    return str(Path(text.removeprefix("file://")).expanduser().absolute())


def join(base: str | Path, *parts: str) -> str:
    return posixpath.join(str(base), *parts)


def name_of(location: str) -> str:
    return posixpath.basename(str(location).rstrip("/"))


def configure(options: dict[str, str]) -> None:
    """Storage options (endpoint, keys) from the recipe, for this process and the Ray workers it starts."""
    if options:
        os.environ[OPTIONS_ENV] = json.dumps(options)
    else:
        os.environ.pop(OPTIONS_ENV, None)
    _filesystem.cache_clear()


@cache
def _filesystem(protocol: str, options_json: str) -> fsspec.AbstractFileSystem:
    options = json.loads(options_json) if protocol not in ("file", "local") else {}
    if protocol == "s3" and "endpoint_url" in options:  # s3fs takes the endpoint inside client_kwargs
        options.setdefault("client_kwargs", {})["endpoint_url"] = options.pop("endpoint_url")
    # our own cache (cleared by `configure`) decides reuse: fsspec's would keep an instance built for older settings
    return fsspec.filesystem(protocol, skip_instance_cache=True, **options)


def filesystem(location: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """The file system that holds `location`, and the location's path inside it."""
    if not is_remote(location):
        return _filesystem("file", "{}"), normalize(location)
    protocol, path = location.split("://", 1)
    return _filesystem(protocol, os.environ.get(OPTIONS_ENV, "{}")), path


def exists(location: str) -> bool:
    fs, path = filesystem(location)
    return fs.exists(path)


def read_bytes(location: str) -> bytes:
    fs, path = filesystem(location)
    return fs.cat_file(path)


def read_text(location: str) -> str:
    return read_bytes(location).decode("utf-8")


def write_bytes(location: str, data: bytes) -> None:
    """One whole object: a local file is renamed into place, an object store PUT is atomic already."""
    if not is_remote(location):
        Path(location).parent.mkdir(parents=True, exist_ok=True)
        atomic_write(Path(location), lambda partial: partial.write_bytes(data))
        return
    fs, path = filesystem(location)
    fs.pipe_file(path, data)


def write_text(location: str, text: str) -> None:
    write_bytes(location, text.encode("utf-8"))


def glob(folder: str, pattern: str) -> list[str]:
    """Sorted locations of the files in `folder` whose names match `pattern` (no recursion)."""
    fs, path = filesystem(folder)
    found = fs.glob(posixpath.join(path, pattern))
    return sorted(join(folder, posixpath.basename(p)) for p in found)


def glob_manifests(folder: str, name: str) -> list[str]:
    """Locations of `<folder>/*/<name>`: the committed outputs of a stage folder."""
    fs, path = filesystem(folder)
    return sorted(join(folder, posixpath.basename(posixpath.dirname(p)), name)
                  for p in fs.glob(posixpath.join(path, "*", name)))


def modified(location: str) -> float:
    """When the file at `location` was last written, as a POSIX timestamp."""
    fs, path = filesystem(location)
    stamp = fs.modified(path)
    return stamp.timestamp()


def remove(location: str) -> None:
    fs, path = filesystem(location)
    try:
        fs.rm(path, recursive=True)
    except FileNotFoundError:
        pass


def digest(location: str) -> str:
    """A content key: sha256 of a local file; on an object store its ETag (and version), which change with the bytes."""
    if not is_remote(location):
        return file_digest(Path(normalize(location)))
    fs, path = filesystem(location)
    info = fs.info(path)
    tag = info.get("ETag") or info.get("etag") or info.get("md5Hash") or info.get("crc32c")
    if not tag:
        return hashlib.sha256(fs.cat_file(path)).hexdigest()
    return f"{str(tag).strip(chr(34))}:{info.get('VersionId') or info.get('generation') or ''}"


def cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "tokenmill")


def local_file(location: str) -> Path:
    """A local path holding the file at `location`: the file itself when local, else a node-local copy made once."""
    if not is_remote(location):
        return Path(normalize(location))
    target = cache_root() / "objects" / hashlib.sha256(location.encode()).hexdigest()[:24] / name_of(location)
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        fs, path = filesystem(location)
        atomic_write(target, lambda partial: fs.get_file(path, str(partial)))
    return target


def local_folder(location: str) -> Path:
    """A local folder holding the files under `location` (recursively); a node-local copy when remote."""
    if not is_remote(location):
        return Path(normalize(location))
    target = cache_root() / "objects" / hashlib.sha256(location.encode()).hexdigest()[:24] / name_of(location)
    if not (target / ".complete").exists():
        fs, path = filesystem(location)
        staging = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}")
        fs.get(path.rstrip("/") + "/", str(staging) + "/", recursive=True)
        staging.mkdir(parents=True, exist_ok=True)  # an empty folder has nothing to download
        (staging / ".complete").touch()
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    return target


def upload_folder(local: Path, location: str) -> None:
    fs, path = filesystem(location)
    files = sorted(p for p in local.rglob("*") if p.is_file())
    if files:
        fs.put([str(p) for p in files], [posixpath.join(path, p.relative_to(local).as_posix()) for p in files])


@contextmanager
def writing(location: str) -> Iterator[Path]:
    """A local folder whose files end up under `location` once the block ends without an error.

    Local: the folder is `location` itself. Remote: a node-local scratch folder, uploaded, then removed.
    """
    if not is_remote(location):
        folder = Path(normalize(location))
        folder.mkdir(parents=True, exist_ok=True)
        yield folder
        return
    scratch = Path(tempfile.mkdtemp(prefix="tokenmill-", dir=scratch_root()))
    try:
        yield scratch
        upload_folder(scratch, location)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def scratch_root() -> Path:
    root = cache_root() / "scratch"
    root.mkdir(parents=True, exist_ok=True)
    return root


def link(source: str, target: str) -> None:
    """Make `target` hold the file at `source`: a hard link on one local disk, a copy elsewhere (server-side on
    an object store)."""
    if not is_remote(source) and not is_remote(target):
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(source, target)
        except OSError:  # another file system, or links not allowed: copy
            shutil.copy2(source, target)
        return
    fs, source_path = filesystem(source)
    _, target_path = filesystem(target)
    fs.copy(source_path, target_path)


def new_attempt() -> str:
    return f"attempt-{uuid.uuid4().hex[:12]}"
