"""Provenance of every number the suite writes, and atomic result files.

A results file is only trustworthy if it says what produced it: the code (git commit, dirty flag),
the software (versions), the machine and the data. ``provenance()`` gathers that; ``write_json`` /
``write_text`` write through a temporary file and ``os.replace`` so an interrupted run never leaves a
half-written file behind.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import importlib.metadata
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent


def git_commit(root: Path | None = None) -> dict[str, Any]:
    """``{"commit": sha or None, "dirty": bool or None}`` for the checkout holding this package; when tracked files
    differ from the commit, also ``"diff_sha256"`` (of ``git diff HEAD --binary``) and ``"changed"`` (their paths),
    so that a record made in a dirty tree still names the code it ran."""
    root = root or REPO_ROOT
    try:
        sha = _git(root, "rev-parse", "HEAD").decode().strip()
        if not _git(root, "status", "--porcelain", "--untracked-files=no").strip():
            return {"commit": sha, "dirty": False}
        changed = _git(root, "diff", "HEAD", "--name-only", "-z").decode().split("\0")
        diff = hashlib.sha256(_git(root, "diff", "HEAD", "--binary")).hexdigest()
        return {"commit": sha, "dirty": True, "diff_sha256": diff, "changed": [c for c in changed if c]}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def _git(root: Path, *args: str) -> bytes:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, timeout=30, check=True).stdout


def describe_git(git: Mapping[str, Any] | None) -> str:
    """A record's code in words: the commit (10 digits), and for a dirty tree its diff's sha256 and changed files
    (or that the record predates them)."""
    git = git or {}
    commit = str(git.get("commit") or "unknown")[:10]
    if not git.get("dirty"):
        return commit
    if "diff_sha256" not in git:
        return f"{commit} (dirty tree; no diff recorded)"
    files = ", ".join(git.get("changed", [])[:6]) + (", ..." if len(git.get("changed", [])) > 6 else "")
    return f"{commit} (dirty: diff sha256 {git['diff_sha256'][:12]}, files {files})"


def require_clean_tree(what: str, allow_dirty: bool = False, root: Path | None = None) -> dict[str, Any]:
    """The checkout's :func:`git_commit`; a RetinaError when its tracked files differ from the commit (a published
    record could not be tied to code) unless ``allow_dirty``: then records carry the diff's sha256 and files."""
    from retina.errors import RetinaError

    git = git_commit(root)
    if git["commit"] is None:
        raise RetinaError(f"{what}: not in a git checkout (or git is missing): its records could not name their code")
    if git["dirty"] and not allow_dirty:
        files = " ".join(git["changed"][:10]) + (" ..." if len(git["changed"]) > 10 else "")
        raise RetinaError(
            f"{what}: tracked files differ from commit {git['commit'][:10]} ({files}); commit them first, or pass "
            "--allow-dirty (records then name the diff's sha256 and the changed files)"
        )
    return git


def history_commits(record: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The distinct ``git`` entries of a training record's ``history`` (each invocation's start, each save)."""
    history = record.get("history") or {}
    gits = [e["git"] for key in ("invocations", "saves") for e in history.get(key, []) if "git" in e]
    return list({json.dumps(g, sort_keys=True): g for g in gits}.values())


def require_one_clean_commit(what: str, sources: Mapping[str, Sequence[Mapping[str, Any]]], allow_dirty: bool) -> None:
    """A RetinaError, unless ``allow_dirty``, when the records to publish (name -> the ``git`` entries of what made
    it: training, evaluation) were made in a dirty tree, or not all at one commit."""
    from retina.errors import RetinaError

    if allow_dirty:
        return
    dirty = sorted(name for name, gits in sources.items() if any(g.get("dirty") is not False for g in gits))
    if dirty:
        raise RetinaError(f"{what}: made in a dirty tree (or without a commit): {', '.join(dirty)}; rerun them from a "
                          "clean commit, or pass --allow-dirty")  # fmt: skip
    commits: dict[str, list[str]] = {}
    for name, gits in sorted(sources.items()):
        for commit in dict.fromkeys(str(g.get("commit"))[:10] for g in gits):
            commits.setdefault(commit, []).append(name)
    if len(commits) > 1:
        made = "; ".join(f"{c}: {', '.join(names)}" for c, names in commits.items())
        raise RetinaError(f"{what}: made at {len(commits)} commits ({made}); every row of a table must come from "
                          "one commit: rerun the others, or pass --allow-dirty")  # fmt: skip


# module -> the distributions that install it (the first one installed is reported)
DISTRIBUTIONS: dict[str, tuple[str, ...]] = {
    "retina": ("retina",),
    "torch": ("torch",),
    "torchvision": ("torchvision",),
    "numpy": ("numpy",),
    "scipy": ("scipy",),
    "cv2": ("opencv-python-headless", "opencv-python", "opencv-contrib-python", "opencv-contrib-python-headless"),
    "onnxruntime": ("onnxruntime", "onnxruntime-gpu"),
}


def versions() -> dict[str, str | None]:
    """Versions of the packages whose behaviour can change a number: the installed distribution's, whether or not
    the module is imported yet (else an imported module's ``__version__``); None when not installed."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name, distributions in DISTRIBUTIONS.items():
        module = sys.modules.get(name)
        out[name] = _installed_version(distributions) or getattr(module, "__version__", None)
    return out


def _installed_version(distributions: tuple[str, ...]) -> str | None:
    for dist in distributions:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def machine() -> dict[str, Any]:
    """CPU model, core count, OS and (when torch is imported and CUDA is up) the GPU."""
    info: dict[str, Any] = {
        "hostname_hash": hashlib.sha256(platform.node().encode()).hexdigest()[:12],
        "platform": platform.platform(),
        "processor": _cpu_model(),
        "cpu_count": os.cpu_count(),
    }
    torch = sys.modules.get("torch")
    if torch is not None:
        info["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    return info


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def utc_now() -> str:
    """The current UTC time, ISO 8601 to the second (e.g. ``2026-11-27T22:59:14+00:00``)."""
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def file_id(path: str | os.PathLike[str] | None) -> dict[str, str] | None:
    """What identifies a starting-weights file in a record or run key: its name and sha256 (None: none)."""
    return None if path is None else {"file": Path(path).name, "sha256": file_sha256(path)}


def file_sha256(path: str | os.PathLike[str]) -> str:
    """The sha256 hex digest of a file's bytes (read in 1 MiB blocks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def files_sha256(root: str | os.PathLike[str], files: Iterable[str | os.PathLike[str]]) -> dict[str, Any]:
    """The content hash of a data set: sha256 over each file's path (relative to ``root``, sorted) and bytes.

    Two machines that made or hold the same data get the same digest, whatever the folder it sits in.
    Returns ``{"sha256", "files"}``.
    """
    root = Path(root)
    names = sorted({Path(f).resolve().relative_to(root.resolve()).as_posix() for f in files})
    digest = hashlib.sha256()
    for name in names:
        digest.update(name.encode() + b"\0" + file_sha256(root / name).encode())
    return {"sha256": digest.hexdigest(), "files": len(names)}


def provenance(**extra: Any) -> dict[str, Any]:
    """Everything needed to say where a number came from; ``extra`` adds config, seed, data, device."""
    return {
        "created_utc": utc_now(),
        "git": git_commit(),
        "versions": versions(),
        "machine": machine(),
        "argv": list(sys.argv),
        **extra,
    }


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give results the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` atomically (temporary file + rename); returns the path."""
    _atomic_write_bytes(Path(path), text.encode("utf-8"))
    return Path(path)


def write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` atomically; returns the path."""
    _atomic_write_bytes(Path(path), data)
    return Path(path)


def write_json(path: str | os.PathLike[str], obj: Mapping[str, Any] | list[Any]) -> Path:
    """Write ``obj`` as indented JSON, atomically. NaN and infinity are refused (not valid JSON)."""
    return write_text(path, json.dumps(obj, indent=2, allow_nan=False, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


@contextmanager
def staged_folder(out: Path) -> Iterator[Path]:
    """A temporary sibling of ``out`` to fill; on success it replaces ``out`` in one rename (an older ``out`` is
    moved aside, then removed), so the folder appears complete or not at all. On any error, Ctrl-C or SIGTERM
    it is deleted (SIGTERM raises ``SystemExit(143)`` in the block; the final swap holds both signals back)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        with _sigterm_raises():
            yield tmp
        tmp.chmod(0o755)  # mkdtemp makes it private; a dataset folder (and shared cache) should be readable
        with _signals_held():
            if out.exists():
                old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
                os.replace(out, old / "split")
                shutil.rmtree(old)
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _sigterm_exit(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


@contextmanager
def _sigterm_raises() -> Iterator[None]:
    """SIGTERM raises SystemExit in the block (so ``finally`` and ``except`` run), where it would kill the
    process outright: only in the main thread, and only where no one else handles SIGTERM."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) != signal.SIG_DFL:
        yield
        return
    signal.signal(signal.SIGTERM, _sigterm_exit)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


@contextmanager
def _signals_held() -> Iterator[None]:
    """SIGINT and SIGTERM wait until the block ends (main thread, POSIX): a rename pair is not cut in two."""
    held = {signal.SIGINT, signal.SIGTERM}
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "pthread_sigmask"):
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
