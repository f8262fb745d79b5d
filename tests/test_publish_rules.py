"""Records tied to code (issue 25): provenance names a dirty tree's diff, and every path that writes committed records
refuses a tree whose tracked files differ from the commit (or records made so, or at several commits) unless
``--allow-dirty``. Each refusal is checked in a temporary git repository."""

from __future__ import annotations

import hashlib
import importlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from retina import results
from retina.errors import RetinaError
from retina.results import describe_git, git_commit, require_clean_tree, require_one_clean_commit

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")


def _git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def repo(tmp_path):
    """A repository with one commit (a.txt, b.txt, reports/records/): clean until a test edits it."""
    root = tmp_path / "repo"
    (root / "reports" / "records").mkdir(parents=True)
    (root / "a.txt").write_text("a\n")
    (root / "b.txt").write_text("b\n")
    (root / "reports" / "records" / "keep.json").write_text("{}\n")
    _git(root, "init", "-q")
    _git(root, "-c", "user.name=t", "-c", "user.email=t@t", "add", ".")
    _git(root, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "one")
    return root


@pytest.fixture
def dirty(repo, monkeypatch):
    """The repository with a tracked file changed, standing in for this checkout (``retina.results.REPO_ROOT``)."""
    (repo / "a.txt").write_text("changed\n")
    monkeypatch.setattr(results, "REPO_ROOT", repo)
    return repo


def test_git_commit_names_the_diff_of_a_dirty_tree(repo):
    head = _git(repo, "rev-parse", "HEAD").strip()
    (repo / "untracked.txt").write_text("not part of the code\n")
    assert git_commit(repo) == {"commit": head, "dirty": False}  # untracked files do not count
    (repo / "b.txt").write_text("edited\n")
    got = git_commit(repo)
    diff = subprocess.run(["git", "diff", "HEAD", "--binary"], cwd=repo, check=True, capture_output=True).stdout
    assert got == {"commit": head, "dirty": True, "diff_sha256": hashlib.sha256(diff).hexdigest(), "changed": ["b.txt"]}
    (repo / "b.txt").write_text("edited again\n")
    assert git_commit(repo)["diff_sha256"] != got["diff_sha256"]  # another diff, another hash
    assert git_commit(repo.parent)["commit"] is None  # not a repository


def test_describe_git_golden():
    assert describe_git({"commit": "0123456789abcdef", "dirty": False}) == "0123456789"
    assert describe_git({"commit": "0123456789abcdef", "dirty": True}) == "0123456789 (dirty tree; no diff recorded)"
    git = {"commit": "0123456789abcdef", "dirty": True, "diff_sha256": "f" * 64, "changed": ["x.py", "y.py"]}
    assert describe_git(git) == "0123456789 (dirty: diff sha256 ffffffffffff, files x.py, y.py)"
    assert describe_git(None) == "unknown"


def test_require_clean_tree(repo):
    assert require_clean_tree("x", root=repo)["dirty"] is False
    (repo / "a.txt").write_text("changed\n")
    with pytest.raises(RetinaError, match=r"x: tracked files differ from commit \w{10} \(a\.txt\); commit them"):
        require_clean_tree("x", root=repo)
    assert require_clean_tree("x", allow_dirty=True, root=repo)["changed"] == ["a.txt"]
    with pytest.raises(RetinaError, match="not in a git checkout"):
        require_clean_tree("x", allow_dirty=True, root=repo.parent)


def test_require_one_clean_commit():
    clean = {"commit": "a" * 40, "dirty": False}
    require_one_clean_commit("t", {"r0": [clean], "r1": [clean, clean]}, allow_dirty=False)
    with pytest.raises(RetinaError, match=r"dirty tree \(or without a commit\): r1"):
        require_one_clean_commit("t", {"r0": [clean], "r1": [clean, {"commit": "a" * 40, "dirty": True}]}, False)
    with pytest.raises(RetinaError, match="without a commit"):
        require_one_clean_commit("t", {"r0": [{"commit": None, "dirty": None}]}, False)
    other = {"commit": "b" * 40, "dirty": False}
    with pytest.raises(RetinaError, match=r"made at 2 commits \(aaaaaaaaaa: r0; bbbbbbbbbb: r1\)"):
        require_one_clean_commit("t", {"r0": [clean], "r1": [other]}, False)
    with pytest.raises(RetinaError, match="2 commits"):  # a record trained at one commit and evaluated at another
        require_one_clean_commit("t", {"r0": [clean, other]}, False)
    require_one_clean_commit("t", {"r0": [clean], "r1": [other, {"dirty": True}]}, allow_dirty=True)


# --- every path that publishes ---------------------------------------------------------------------------------

BENCHMARKS = [
    ("box_convention", []),
    ("dense_gallery", []),
    ("eval_speed", []),
    ("gallery", []),
    ("main_job", []),
    ("pixel_fit", []),
    ("pixel_step", []),
    ("real_transfer", ["--weights", "w.pth"]),
    ("speed", ["grid", "--backends", "torch"]),
    ("speed", ["fastpath"]),
    ("synth_speed", []),
    ("dcn_offsets", []),
    ("summation_drift", []),
]


@pytest.mark.parametrize(("name", "extra"), BENCHMARKS)
def test_benchmarks_refuse_to_publish_from_a_dirty_tree(name, extra, dirty, capsys):
    module = importlib.import_module(f"benchmarks.{name}")
    if name == "speed" and extra == ["fastpath"] and module.missing_onnx_modules():
        pytest.skip("the fast-path benchmark needs onnxruntime before anything else")
    with pytest.raises(SystemExit) as exit_:
        module.main([*extra, "--publish"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "--publish: tracked files differ from commit" in err and "(a.txt)" in err and "--allow-dirty" in err


def _finished_run(folder: Path, git: list[dict]) -> Path:
    folder.mkdir()
    (folder / "final.pth").write_bytes(b"")
    history = {"invocations": [{"git": g} for g in git[:1]], "saves": [{"git": g} for g in git[1:]]}
    (folder / "train_record.json").write_text(json.dumps({"finished": True, "history": history}))
    return folder


@pytest.mark.parametrize("name", ["embedded_checkpoint", "embedded_arcface"])
def test_packaging_a_committed_checkpoint_needs_a_clean_tree_and_a_clean_run(name, repo, monkeypatch, capsys,
                                                                              tmp_path):  # fmt: skip
    module = importlib.import_module(f"benchmarks.{name}")
    monkeypatch.setattr(results, "REPO_ROOT", repo)
    clean, dirty_git = {"commit": "c" * 40, "dirty": False}, {"commit": "c" * 40, "dirty": True}
    run = _finished_run(tmp_path / "run", [clean, dirty_git])  # trained partly in a dirty tree
    with pytest.raises(SystemExit) as exit_:
        module.main(["--run", str(run)])
    assert exit_.value.code == 2 and f"made in a dirty tree (or without a commit): {run}" in capsys.readouterr().err
    (repo / "a.txt").write_text("changed\n")
    with pytest.raises(SystemExit):
        module.main(["--run", str(_finished_run(tmp_path / "clean_run", [clean, clean]))])
    assert "(writes retina/weights/): tracked files differ" in capsys.readouterr().err


def test_ablation_runner_refuses_before_training_and_checks_the_records(dirty, tmp_path, capsys):
    from ablations import run as runner

    assert runner.main(["dcn", "--publish", "--out", str(tmp_path / "never")]) == 2
    assert "ablations.run --publish: tracked files differ" in capsys.readouterr().err
    assert not (tmp_path / "never").exists()  # refused before anything ran

    folder = tmp_path / "ab"
    (folder / "records").mkdir(parents=True)
    clean = {"commit": "d" * 40, "dirty": False}

    def record(name, evaluated, trained):
        path = folder / "records" / f"{name}.json"
        path.write_text(json.dumps({"provenance": {"git": evaluated}, "train": {"git": trained}}))

    record("base__seed0", clean, [clean])
    record("dcn__seed0", clean, [{"commit": "e" * 40, "dirty": False}])  # trained at another commit
    with pytest.raises(RetinaError, match="made at 2 commits"):
        runner.publish(folder, tmp_path / "published")
    record("dcn__seed0", {"commit": "d" * 40, "dirty": True}, [clean])
    with pytest.raises(RetinaError, match=r"dirty tree.*dcn__seed0"):
        runner.publish(folder, tmp_path / "published")
    assert not (tmp_path / "published").exists()
    runner.publish(folder, tmp_path / "published", allow_dirty=True)
    record("dcn__seed0", clean, [clean])
    runner.publish(folder, tmp_path / "published2")
    assert sorted(p.name for p in (tmp_path / "published2" / "records").iterdir()) == ["base__seed0.json",
                                                                                      "dcn__seed0.json"]  # fmt: skip


@pytest.mark.parametrize(
    "argv",
    [
        ["landmarks", "--publish"],
        ["verification", "--publish"],
        ["mesh-pretrain", "--out", "{tmp}/m", "--package", "{weights}"],
    ],
)
def test_cli_refuses_to_publish_from_a_dirty_tree(argv, dirty, tmp_path, capsys):
    from retina.cli import main
    from retina.weights import DEFAULT_DECODER

    argv = [a.format(tmp=tmp_path, weights=DEFAULT_DECODER.parent) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "tracked files differ from commit" in err and err.count("\n") == 1
    assert not (tmp_path / "m").exists()


def test_report_publish_refuses_a_dirty_checkout(repo, monkeypatch, capsys):
    from retina.cli import main

    monkeypatch.chdir(repo)
    (repo / "a.txt").write_text("changed\n")
    assert main(["report", "--publish"]) == 2
    assert "retina report --publish: tracked files differ" in capsys.readouterr().err
    assert not (repo / "docs").exists()
