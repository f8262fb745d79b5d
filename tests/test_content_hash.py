"""Records say which data they used: content hashes that follow the bytes, not the folder."""

from __future__ import annotations

import shutil

from retina.data.dataset import SplitPaths, content_id
from retina.data.widerface import load_ground_truth
from retina.evaluate import EvalSplit, split_content
from retina.results import files_sha256
from tests.toy_faces import make_toy_split


def test_files_sha256_follows_content_not_location_or_order(tmp_path):
    a = tmp_path / "a"
    (a / "x").mkdir(parents=True)
    (a / "x" / "1.bin").write_bytes(b"one")
    (a / "2.bin").write_bytes(b"two")
    files = [a / "x" / "1.bin", a / "2.bin"]
    first = files_sha256(a, files)
    assert first["files"] == 2 and files_sha256(a, files[::-1]) == first
    shutil.copytree(a, tmp_path / "b")
    assert files_sha256(tmp_path / "b", [tmp_path / "b" / "x" / "1.bin", tmp_path / "b" / "2.bin"]) == first
    (a / "2.bin").write_bytes(b"twO")
    assert files_sha256(a, files)["sha256"] != first["sha256"]
    (a / "2.bin").write_bytes(b"two")
    (a / "x" / "1.bin").rename(a / "1.bin")  # the same bytes under another name: other data
    assert files_sha256(a, [a / "1.bin", a / "2.bin"])["sha256"] != first["sha256"]


def test_split_hashes_cover_images_and_labels(tmp_path):
    toy = make_toy_split(tmp_path / "toy")
    shutil.copytree(toy, tmp_path / "copy")
    train = content_id(SplitPaths.from_root(toy))
    assert train == content_id(SplitPaths.from_root(tmp_path / "copy")) and train["images"] == 8
    split = EvalSplit.from_root(toy)
    evaluated = split_content(split, load_ground_truth(split.gt))
    assert evaluated["images"] == 8
    image = next((tmp_path / "copy" / "images").rglob("*.jpg"))
    image.write_bytes(image.read_bytes() + b"\0")  # one byte more in one image
    assert content_id(SplitPaths.from_root(tmp_path / "copy"))["sha256"] != train["sha256"]
    copy = EvalSplit.from_root(tmp_path / "copy")
    assert split_content(copy, load_ground_truth(copy.gt))["sha256"] != evaluated["sha256"]
    label = tmp_path / "copy" / "label.txt"
    label.write_text(label.read_text() + "\n")
    assert content_id(SplitPaths.from_root(tmp_path / "copy"))["sha256"] != train["sha256"]
