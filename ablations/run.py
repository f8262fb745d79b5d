"""The ablation runner: train every (variant, seed) under identical conditions, evaluate, record, tabulate.

    python -m ablations.run landmarks                      # CPU setting on SynthFace (nox -s ablation_landmarks)
    python -m ablations.run dcn --seeds 0 1 2 3 4
    torchrun --nproc_per_node 4 -m ablations.run dcn --setting paper --device cuda \\
        --data-root /data/widerface/train --val-root /data/widerface/val --pretrained-backbone r50.pth

Every row of an ablation gets the same data, schedule, seeds and test protocol; only the ablated field
differs (:mod:`ablations.variants`). Files under ``--out/<ablation>/`` (default ``results/ablations``)::

    runs/<variant>/seed<k>/           the engine's run folder (checkpoints, metrics.jsonl, train_record.json)
    runs/<variant>/seed<k>/eval_<protocol>/   results.json, pr_curves.csv/png, predictions/
    records/<variant>__seed<k>.json   one record per (variant, seed): APs, PR curves, configs, provenance, and
                                      (rows after the baseline) the paired image bootstrap of the AP differences
    table.md, table.csv, table.json, pr_curves.png    (:mod:`retina.report.ablation_table`)

Reruns skip finished records and resume unfinished trainings; a record or run made with other settings is
an error (use another ``--out``). On the CPU, ``--jobs`` runs (variant, seed) pairs in parallel processes
(default: one per core, one thread each). Under ``torchrun`` every process trains; then rank 0 alone evaluates and
writes the records (the other processes leave), so no process waits on a collective during evaluation.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ablations.variants import ABLATIONS, Ablation, Setting, SynthData, Variant
from retina.config import PRESETS, PostCfg, config_hash, preset, to_dict
from retina.data.dataset import SplitPaths
from retina.errors import RetinaError
from retina.evaluate import EvalSplit
from retina.protocols import PROTOCOLS
from retina.results import (
    REPO_ROOT,
    file_id,
    history_commits,
    provenance,
    require_clean_tree,
    require_one_clean_commit,
    staged_folder,
    write_json,
)

DEFAULT_OUT = REPO_ROOT / "results" / "ablations"
DEV_ROOT = REPO_ROOT.parent / "shared" / "data" / "widerface"
PUBLISHED = REPO_ROOT / "reports" / "records" / "ablations"


@dataclass(frozen=True)
class RowData:
    """A row's training data: folders, what they are (for records) and what identifies them (for the run key)."""

    train: SplitPaths
    label: str
    data_id: dict[str, Any]


@dataclass(frozen=True)
class Plan:
    """One ablation under one setting, with its data resolved and where/how to run it.

    ``row_data``: the training data of rows that ablate a SynthFace field (variant key -> data); every other row
    trains on ``train_data``. Every row is evaluated on ``eval_split`` and, when given, on ``real_split`` too.
    """

    ablation: Ablation
    setting: Setting
    train_data: SplitPaths
    train_label: str
    eval_split: EvalSplit
    data_id: dict[str, Any]  # what identifies the data in the record key (config hash or resolved paths)
    synthetic: bool
    out: Path  # <out>/<ablation name>
    device: str = "cpu"
    workers: int | None = None  # data-loader workers per run; None: retina.engine.loader_workers
    checkpoint_every: int = 100
    pretrained_backbone: Path | None = None
    progress: bool = True
    row_data: dict[str, RowData] = dataclasses.field(default_factory=dict)
    real_split: EvalSplit | None = None

    @property
    def variants(self) -> tuple[Variant, ...]:
        return self.ablation.variants(self.setting)

    def data_of(self, variant: Variant) -> RowData:
        """The training data of ``variant``'s row."""
        return self.row_data.get(variant.key) or RowData(self.train_data, self.train_label, self.data_id)


def synth_pair(
    data: SynthData, workers: int | None = None, splits: tuple[str, ...] = ("train", "val")
) -> tuple[Path, ...]:
    """The (train, val) folders of a SynthFace pair, generated on first use into the SynthFace cache.

    Named by generator version and a hash of config and seed, like ``retina.synth.splits.default_split``;
    concurrent callers are safe (each generates into a temporary folder, the first rename wins).
    """
    from retina.synth.config import SYNTH_VERSION
    from retina.synth.splits import cache_root, generate_split

    key = json.dumps({"version": SYNTH_VERSION, "config": data.cfg.to_dict(), "seed": data.seed}, sort_keys=True)
    root = cache_root() / f"v{SYNTH_VERSION}-ablation-{hashlib.sha256(key.encode()).hexdigest()[:12]}"
    workers = workers if workers is not None else min(os.cpu_count() or 1, 8)
    folders = []
    for split in splits:
        n = data.cfg.train_images if split == "train" else data.cfg.val_images
        folder = root / split
        if not (folder / "synth.json").is_file():
            print(f"generating SynthFace {split} split ({n} images) into {folder}", flush=True)
            try:
                generate_split(folder, data.cfg, split, n, data.seed, workers=workers if n >= 16 else 1)
            except (RetinaError, OSError):
                if not (folder / "synth.json").is_file():  # not another process winning the race
                    raise
        folders.append(folder)
    return tuple(folders)


def run_key(plan: Plan, variant: Variant) -> str:
    """Hash of everything that decides a record's numbers (the seed is in ``train_cfg``)."""
    content = {
        "model_cfg": to_dict(variant.model),
        "train_cfg": to_dict(variant.train),
        "data": plan.data_of(variant).data_id,
        "protocol": plan.setting.protocol,
        "post": to_dict(PostCfg()),
        "backbone_init": file_id(plan.pretrained_backbone),
    }
    if variant.model.head.mesh:  # the pre-trained decoder every mesh row starts from (absent: keys unchanged)
        from retina.weights import DEFAULT_DECODER

        content["mesh_decoder_init"] = file_id(DEFAULT_DECODER)
    if plan.real_split is not None:  # absent: the keys of records without a real evaluation are unchanged
        content["real"] = plan.real_split.label
    if variant.model.neck.dcn:  # named at its default too: DCN records from before it trained the offsets at 1x
        content["dcn_offset_lr"] = variant.train.dcn_offset_lr
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]


def seeded(variant: Variant, seed: int) -> Variant:
    return dataclasses.replace(variant, train=dataclasses.replace(variant.train, seed=seed))


def run_dir(plan: Plan, variant: Variant, seed: int) -> Path:
    return plan.out / "runs" / variant.key / f"seed{seed}"


def record_path(plan: Plan, variant: Variant, seed: int) -> Path:
    return plan.out / "records" / f"{variant.key}__seed{seed}.json"


def finished_record(plan: Plan, variant: Variant, seed: int) -> bool:
    """True when the record exists and was made with these settings; a record made otherwise is an error."""
    path = record_path(plan, variant, seed)
    if not path.is_file():
        return False
    key = json.loads(path.read_text())["key"]
    if key != run_key(plan, seeded(variant, seed)):
        raise RetinaError(f"{path} was made with other settings (key {key}); use another --out or remove it")
    return True


def _trained(out: Path, variant: Variant, data: SplitPaths) -> bool:
    """True when ``out`` holds a finished training of exactly this variant on this data (same fingerprint)."""
    from retina.data.dataset import data_fingerprint

    path = out / "train_record.json"
    if not (path.is_file() and (out / "final.pth").is_file()):
        return False
    rec = json.loads(path.read_text())
    same = (
        rec.get("model_cfg_hash") == config_hash(variant.model)
        and rec.get("train_cfg_hash") == config_hash(variant.train)
        and rec.get("data", {}).get("fingerprint", {}).get("sha256") == data_fingerprint(data)["sha256"]
        and (not variant.model.neck.dcn or rec.get("dcn_offset_lr") == variant.train.dcn_offset_lr)
    )
    if not same:
        raise RetinaError(f"{out} holds a training with other settings; use another --out or remove it")
    return bool(rec.get("finished"))


def train_one(plan: Plan, base: Variant, seed: int) -> float | None:
    """Train (or resume) one (variant, seed) unless finished; returns this call's seconds (None: skipped)."""
    from retina.engine import RunSpec, train

    variant = seeded(base, seed)
    out = run_dir(plan, variant, seed)
    data = plan.data_of(variant)
    if _trained(out, variant, data.train):
        return None
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"[{plan.ablation.name}] train {variant.key} seed {seed} -> {out}", flush=True)
    spec = RunSpec(
        out_dir=out,
        data=data.train,
        device=plan.device,
        workers=plan.workers,
        checkpoint_every=plan.checkpoint_every,
        log_every=10,
        resume=(out / "last.pth").is_file(),
        pretrained_backbone=plan.pretrained_backbone,
        progress=plan.progress,
        data_label=data.label,
    )
    t0 = time.perf_counter()
    train(variant.model, variant.train, spec)
    return time.perf_counter() - t0


def _curve(values: Any) -> list[float | None]:
    return [None if math.isnan(v) else round(float(v), 6) for v in values]


def evaluate_one(plan: Plan, base: Variant, seed: int, train_seconds: float | None) -> Path:
    """Evaluate the trained (variant, seed) with the setting's protocol and write its record atomically."""
    import torch

    from retina.api import Detector
    from retina.evaluate import evaluate_detector

    variant = seeded(base, seed)
    out = run_dir(plan, variant, seed)
    device = plan.device
    if device == "cuda":
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    detector = Detector.from_checkpoint(out / "final.pth", device=device)
    if detector.cfg != variant.model:
        raise RetinaError(f"{out / 'final.pth'} holds another architecture than variant {variant.key}")
    protocol = plan.setting.protocol
    t0 = time.perf_counter()
    context = {"ablation": plan.ablation.name, "variant": variant.key, "seed": seed}
    result, paths = evaluate_detector(
        detector, plan.eval_split, out / f"eval_{protocol}", protocol, progress=plan.progress, **context
    )
    dense = _dense(plan, variant, detector)
    real = _real(plan, detector, out / f"real_{protocol}", protocol)
    eval_seconds = time.perf_counter() - t0
    train_record = json.loads((out / "train_record.json").read_text())
    if train_seconds is None and train_record["resumed_from"] == 0:  # trained whole by an earlier invocation
        train_seconds = train_record["wall_time_s_this_process"]
    record = {
        "ablation": plan.ablation.name,
        "description": plan.ablation.description,
        "field": plan.ablation.field,
        "variant": variant.key,
        "label": variant.label,
        "value": variant.value,
        "baseline": variant.baseline,
        "order": [v.key for v in plan.variants].index(variant.key),
        "seed": seed,
        "setting": plan.setting.name,
        "setting_note": plan.setting.note,
        "paper_rows": list(plan.ablation.paper_rows),
        "synthetic": plan.synthetic,
        "train_data": plan.data_of(variant).label,
        "eval_data": plan.eval_split.label,
        "protocol": protocol,
        "key": run_key(plan, variant),
        # AP as fractions in [0, 1] (the tables show percent, as the paper does)
        "metrics": {**result.ap, "hard_map": result.hard_map_50_95},
        **({"dense": dense} if dense is not None else {}),
        **({"real": real} if real is not None else {}),
        "iou": result.iou,
        "counts": dict(result.counts),
        "curves": {s: {"recall": _curve(c.recall), "precision": _curve(c.precision)} for s, c in result.curves.items()},
        "model_cfg": to_dict(variant.model),
        "model_cfg_hash": config_hash(variant.model),
        "train_cfg": to_dict(variant.train),
        "train_cfg_hash": config_hash(variant.train),
        "train": {
            "iterations": train_record["iterations"],
            "image_size": variant.train.augment.image_size,
            "batch_size": variant.train.batch_size,
            "world_size": train_record["world_size"],
            "device": train_record["device"],
            "wall_s": train_seconds,
            "final_losses": train_record["final_losses"],
            "run_dir": str(out),
            "git": history_commits(train_record),
        },
        **({"dcn_offsets": dcn_offsets(out)} if variant.model.neck.dcn else {}),
        "backbone_init": file_id(plan.pretrained_backbone),
        "eval": {"wall_s": eval_seconds, "results": str(paths["json"])},
        "provenance": provenance(ablation=plan.ablation.name, variant=variant.key, seed=seed),
    }
    del detector
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return write_json(record_path(plan, variant, seed), record)


OFFSET_KEYS = ("dcn_offset_max", "dcn_offset_mean", "dcn_mask_min", "dcn_mask_max")


def dcn_offsets(out: Path) -> dict[str, Any]:
    """What a DCN run's offsets did (``metrics.jsonl``): the last logged line's statistics, and the largest
    |offset| of the whole run (pixels of each DCN layer's input)."""
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line]
    logged = [m for m in lines if all(k in m for k in OFFSET_KEYS)]
    if not logged:
        return {}
    return {"final": {k: logged[-1][k] for k in OFFSET_KEYS}, "iteration": logged[-1]["iteration"],
            "run_offset_max": max(m["dcn_offset_max"] for m in logged)}  # fmt: skip


def _dense(plan: Plan, variant: Variant, detector: Any) -> dict[str, Any] | None:
    """The mesh NME on the SynthFace val split (``retina.dense.accuracy``) for a mesh-head model; None otherwise
    (no mesh head, or real data, which has no true meshes)."""
    if not (variant.model.head.mesh and plan.synthetic):
        return None
    from retina.dense.accuracy import DenseCfg, dense_accuracy

    cfg = DenseCfg(min_face=variant.train.pixel.min_face, crop_margin=variant.train.pixel.crop_margin)
    return dense_accuracy(detector, plan.eval_split.images.parent, cfg)


def _real(plan: Plan, detector: Any, out: Path, protocol: str) -> dict[str, Any] | None:
    """APs, hard mAP and the operating point (score 0.5) on the real split, when the plan has one."""
    if plan.real_split is None:
        return None
    from retina.data.widerface import load_ground_truth, read_predictions
    from retina.eval.transfer import operating_point
    from retina.evaluate import evaluate_detector

    result, _ = evaluate_detector(detector, plan.real_split, out, protocol, progress=plan.progress)
    gt = load_ground_truth(plan.real_split.gt)
    predictions = read_predictions(out / "predictions", gt).detections
    return {
        "data": plan.real_split.label,
        "metrics": {**result.ap, "hard_map": result.hard_map_50_95},
        "operating_point": operating_point(predictions, gt),
    }


def _todo(plan: Plan) -> list[tuple[Variant, int]]:
    return [(v, seed) for seed in plan.setting.seeds for v in plan.variants if not finished_record(plan, v, seed)]


def _report(plan: Plan, variant: Variant, seed: int, path: Path) -> None:
    ap = json.loads(path.read_text())["metrics"]
    scores = " ".join(f"{m} {ap[m]:.4f}" for m in ("easy", "medium", "hard", "hard_map"))
    print(f"[{plan.ablation.name}] {variant.key} seed {seed}: {scores}", flush=True)


def _job(plan: Plan, variant: Variant, seed: int) -> Path:
    """Train and evaluate one (variant, seed): the unit of work of a ``--jobs`` process."""
    return evaluate_one(plan, variant, seed, train_one(plan, variant, seed))


def _init_job(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def run(plan: Plan, jobs: int = 1) -> list[Path]:
    """Train every (variant, seed) without a record, evaluate it and write its record; returns the record paths.

    ``jobs`` > 1 (CPU only, not under torchrun): that many (variant, seed) runs at once, each in its own
    process with ``cpu_count // jobs`` threads and no data-loader workers. On a few cores this beats one run
    with all threads: torch's small CPU convolutions (and torchvision's deform_conv2d above all) scale
    poorly across threads. Results depend on the thread count only through floating-point summation order.
    Under torchrun every process trains each run (DDP); then rank 0 alone evaluates and records.
    """
    import torch.distributed as dist

    todo = _todo(plan)
    for variant, seed in [(v, s) for s in plan.setting.seeds for v in plan.variants]:
        if (variant, seed) not in todo:
            print(f"[{plan.ablation.name}] {variant.key} seed {seed}: record exists, skipped")
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if jobs > 1 and todo and not distributed and plan.device == "cpu":
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor, as_completed

        threads = max(1, (os.cpu_count() or 1) // jobs)
        job_plan = dataclasses.replace(plan, workers=0, progress=False)
        ctx = mp.get_context("spawn")  # a clean interpreter per job (forking torch's thread pools can hang)
        n = min(jobs, len(todo))
        with ProcessPoolExecutor(n, mp_context=ctx, initializer=_init_job, initargs=(threads,)) as pool:
            # the costlier variants (later rows: +DCN) first, so the processes finish together
            order = sorted(todo, key=lambda vs: (-plan.variants.index(vs[0]), vs[1]))
            futures = {pool.submit(_job, job_plan, v, s): (v, s) for v, s in order}
            for future in as_completed(futures):
                _report(plan, *futures[future], future.result())
    else:
        seconds = {(v.key, s): train_one(plan, v, s) for v, s in todo}
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()  # the trainings are done; evaluation needs no collective
        if int(os.environ.get("RANK", "0")) != 0:
            return []
        for variant, seed in todo:
            _report(plan, variant, seed, evaluate_one(plan, variant, seed, seconds[(variant.key, seed)]))
    add_bootstraps(plan)
    return [record_path(plan, v, s) for s in plan.setting.seeds for v in plan.variants]


BOOTSTRAP_DRAWS, BOOTSTRAP_SEED = 1000, 0


def add_bootstraps(plan: Plan, n: int = BOOTSTRAP_DRAWS) -> None:
    """Give each non-baseline record without one the paired image bootstrap of its AP differences to the same-seed
    baseline (``bootstrap``; ``real.bootstrap`` on the real split), from the two evaluations' prediction folders;
    records whose folders are gone (copied records) are left as they are. The same image draws for every record."""
    base, protocol = plan.variants[0], plan.setting.protocol
    for seed in plan.setting.seeds:
        base_dir = run_dir(plan, seeded(base, seed), seed)
        for variant in plan.variants[1:]:
            path = record_path(plan, variant, seed)
            if not path.is_file():
                continue
            record, folder = json.loads(path.read_text()), run_dir(plan, seeded(variant, seed), seed)
            against = f"{base.key} seed {seed}"
            before = json.dumps(record, sort_keys=True)
            if "bootstrap" not in record:
                record |= _paired(base_dir / f"eval_{protocol}", folder / f"eval_{protocol}", n, against)
            if "real" in record and "bootstrap" not in record["real"]:
                record["real"] |= _paired(base_dir / f"real_{protocol}", folder / f"real_{protocol}", n, against)
            if json.dumps(record, sort_keys=True) != before:
                write_json(path, record)


def _paired(base: Path, variant: Path, n: int, against: str) -> dict[str, Any]:
    """``{"bootstrap": ...}``: the paired bootstrap of AP(variant) - AP(base) per setting (fractions), or ``{}``
    when either evaluation folder is missing."""
    from retina.commands.compare import paired, read_results
    from retina.eval.bootstrap import record

    if not ((base / "results.json").is_file() and (variant / "results.json").is_file()):
        return {}
    (_, a), (_, b) = read_results(base), read_results(variant)
    intervals = paired(a, b, n, BOOTSTRAP_SEED)
    difference = {s: intervals[s]["difference"].to_dict() for s in intervals}
    return {"bootstrap": {**record(n, BOOTSTRAP_SEED, 0.95), "against": against, "difference": difference}}


def publish(folder: Path, dest: Path, allow_dirty: bool = False) -> Path:
    """Copy ``folder``'s records and table into ``dest`` (the committed copy), replacing it in one rename.

    Refused (unless ``allow_dirty``) when a record was trained or evaluated in a dirty tree, or the records come
    from more than one commit: a published table's rows are tied to one commit's code.
    """
    import shutil

    sources = {}
    for path in sorted((folder / "records").glob("*.json")):
        record = json.loads(path.read_text())
        sources[path.stem] = [record["provenance"]["git"], *record["train"].get("git", [])]
    require_one_clean_commit(f"publishing {folder}", sources, allow_dirty)
    with staged_folder(dest) as tmp:
        shutil.copytree(folder / "records", tmp / "records")
        for name in ("table.md", "table.csv", "table.json"):
            if (folder / name).is_file():
                shutil.copyfile(folder / name, tmp / name)
    return dest


# --- command line ---------------------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m ablations.run", description=__doc__.splitlines()[0])
    p.add_argument("ablation", choices=sorted(ABLATIONS), help="which ablation table")
    p.add_argument("--setting", choices=["cpu", "paper"], default="cpu", help="base setting (default: cpu)")
    p.add_argument("--data-root", type=Path, help="training split: images/ + label.txt (default: SynthFace)")
    p.add_argument("--val-root", type=Path, help="evaluation split in the WIDER layout (with --data-root)")
    p.add_argument("--gt", type=Path, help="folder of the official .mat files, if not under --val-root")
    p.add_argument("--preset", choices=sorted(PRESETS), help="base architecture (default: the setting's)")
    p.add_argument("--epochs", type=float, help="training length in epochs (replaces the setting's iterations)")
    p.add_argument("--max-iterations", type=int, help="training length in iterations")
    p.add_argument("--batch-size", type=int, help="global batch size")
    p.add_argument("--image-size", type=int, help="training input side")
    p.add_argument("--seeds", type=int, nargs="+", help="seeds (default: 0 1 2)")
    p.add_argument("--protocol", choices=sorted(PROTOCOLS), help="test protocol (default: the setting's)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (under torchrun each process takes LOCAL_RANK)")
    p.add_argument("--workers", type=int, help="data loader workers per run (--jobs 1; default: retina train's)")
    p.add_argument("--jobs", type=int, help="runs at once on the CPU (default: one per core, <= 6)")
    p.add_argument("--threads", type=int, help="torch threads of this process with --jobs 1 (default: torch's)")
    init = p.add_mutually_exclusive_group()
    init.add_argument(
        "--pretrained-backbone",
        type=Path,
        help="backbone start: ImageNet weights or a retina checkpoint (default: the setting's)",
    )
    init.add_argument("--scratch", action="store_true", help="random backbone initialisation (no pretraining)")
    real = p.add_mutually_exclusive_group()
    real.add_argument("--real-dev", nargs="?", const=DEV_ROOT, type=Path, metavar="DIR",
                      help="also evaluate every row on the real development set (119 WIDER FACE val images "
                      "restored from DIR/val_resized416, default ../shared/data/widerface)")  # fmt: skip
    real.add_argument("--real-root", type=Path, help="also evaluate every row on this WIDER-layout real val split")
    p.add_argument("--checkpoint-every", type=int, default=100, help="iterations between resumable checkpoints")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results folder (default: results/ablations)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--no-table", action="store_true", help="do not build the table at the end")
    p.add_argument(
        "--publish",
        action="store_true",
        help="copy the records and the table into reports/records/ablations/<name>/ (committed); refused unless "
        "the tree is clean and every record comes from one clean commit",
    )
    p.add_argument("--allow-dirty", action="store_true", help="publish anyway (records name the diff's sha256)")
    return p


def configure(args: argparse.Namespace) -> Setting:
    """The chosen setting with the command-line overrides (they apply to every row alike)."""
    ablation = ABLATIONS[args.ablation]
    setting = ablation.setting(args.setting)
    train = setting.train
    if args.epochs is not None:
        train = dataclasses.replace(train, epochs=args.epochs, max_iterations=None)
    if args.max_iterations is not None:
        train = dataclasses.replace(train, max_iterations=args.max_iterations)
    if args.batch_size is not None:
        train = dataclasses.replace(train, batch_size=args.batch_size)
    if args.image_size is not None:
        train = dataclasses.replace(train, augment=dataclasses.replace(train.augment, image_size=args.image_size))
    changes: dict[str, Any] = {"train": train}
    if args.preset is not None:
        changes["preset"] = args.preset
    if args.seeds is not None:
        changes["seeds"] = tuple(args.seeds)
    if args.protocol is not None:
        changes["protocol"] = args.protocol
    if args.data_root is not None:
        changes["data"] = None
        if setting.name == "cpu":
            changes["note"] = "CPU setting (smoke-scale schedule) on the data given by --data-root: not a reproduction."
    try:
        return dataclasses.replace(setting, **changes)
    except ValueError as exc:
        raise RetinaError(str(exc)) from None


def check_backbone_init(setting: Setting, path: Path) -> None:
    """Fail before any training when ``path`` cannot initialise the setting's backbone (a CheckpointError)."""
    from retina.build import build_detector
    from retina.checkpoint import load_pretrained_backbone

    load_pretrained_backbone(build_detector(setting.model), path)


def make_plan(args: argparse.Namespace) -> Plan:
    setting = configure(args)
    if setting.data is None:
        if args.data_root is None or args.val_root is None:
            raise RetinaError(f"the {setting.name} setting trains on real data: pass --data-root (images/ + "
                              "label.txt) and --val-root (WIDER-layout val with ground truth)")  # fmt: skip
        train_data = SplitPaths.from_root(args.data_root)
        train_label = f"RetinaFace-layout train split {args.data_root}"
        eval_split = EvalSplit.from_root(args.val_root, args.gt)
        data_id = {"train": str(args.data_root.resolve()), "val": str(eval_split.images.resolve())}
        synthetic = False
    else:
        if args.val_root is not None:
            raise RetinaError("--val-root needs --data-root (the default data is the SynthFace pair)")
        train_dir, val_dir = synth_pair(setting.data)
        train_data, train_label = SplitPaths.from_root(train_dir), f"{setting.data.label}, train split"
        eval_split = EvalSplit.from_root(val_dir, label=f"{setting.data.label}, val split")
        data_id = {"synth": setting.data.cfg.to_dict(), "seed": setting.data.seed}
        synthetic = True
    row_data = {}
    for variant in ABLATIONS[args.ablation].variants(setting):
        if variant.data is not None:
            (train_dir,) = synth_pair(variant.data, splits=("train",))
            data_id = {"synth": variant.data.cfg.to_dict(), "seed": variant.data.seed}
            label = f"{variant.data.label}, train split"
            row_data[variant.key] = RowData(SplitPaths.from_root(train_dir), label, data_id)
    real_split = None
    if args.real_root is not None:
        real_split = EvalSplit.from_root(args.real_root, label=f"real WIDER-layout val split {args.real_root}")
    elif args.real_dev is not None:
        from retina.eval.transfer import development_set

        real_split = development_set(args.real_dev)
    preset(setting.preset)
    backbone = None if args.scratch else args.pretrained_backbone or setting.backbone_init
    if backbone is not None:
        check_backbone_init(setting, backbone)
    return Plan(
        ablation=ABLATIONS[args.ablation],
        setting=setting,
        train_data=train_data,
        train_label=train_label,
        eval_split=eval_split,
        data_id=data_id,
        synthetic=synthetic,
        out=args.out / args.ablation,
        device=args.device,
        workers=args.workers,
        checkpoint_every=args.checkpoint_every,
        pretrained_backbone=backbone,
        progress=not args.no_progress,
        row_data=row_data,
        real_split=real_split,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    t0 = time.perf_counter()
    try:
        if args.publish:  # before hours of training, not after
            require_clean_tree("ablations.run --publish", args.allow_dirty)
        plan = make_plan(args)
        if args.threads is not None:
            import torch

            torch.set_num_threads(args.threads)
        jobs = args.jobs if args.jobs is not None else min(os.cpu_count() or 1, 6)
        if jobs < 1 or (args.threads is not None and args.threads < 1):
            raise RetinaError("--jobs and --threads must be >= 1")
        paths = run(plan, jobs)
        if paths and not args.no_table:
            from retina.report.ablation_table import build

            written = build(plan.out)
            print(written["md"].read_text())
            print("written: " + ", ".join(str(p) for p in written.values()))
        if args.publish and int(os.environ.get("RANK", "0")) == 0:
            print(f"published: {publish(plan.out, PUBLISHED / args.ablation, args.allow_dirty)}")
    except RetinaError as exc:
        print(f"ablations.run: error: {exc}", file=sys.stderr)
        return 2
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"[{args.ablation}] wall time {time.perf_counter() - t0:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
