"""CPU training throughput (issue 23): where a training iteration's time goes, and the training fast-path table.

    python benchmarks/train_speed.py [--settings synth-cpu,ablation] [--sections step,parts,data,e2e]
        [--rounds 8] [--e2e-rounds 2] [--e2e-iterations 30] [--before REV] [--compile] [--publish]

Two settings, each as the suite trains it on a CPU: ``synth-cpu`` (``retina train --recipe synth-cpu``: batch 16
at 384 px on the default SynthFace train split, torch's default thread count, the default loader workers
(``retina.engine.loader_workers``; 2 before issue 23)) and ``ablation``
(one process of ``ablations/run.py``'s default ``--jobs``: batch 8 at 256 px on the ablation SynthFace pair, one
thread, data loaded in the process). SynthFace is SYNTHETIC data. Sections:

- ``step``: the training step on one real batch (the run's first, augmented), variants timed round-robin
  (``benchmarks.timing.interleaved``, CPU time of the whole process) so that other load falls on all alike. The
  baseline is a **biubug6-style step**, our re-creation of how biubug6/Pytorch_Retinaface trains (its structure,
  not its code): the same model built the same way, run as that code runs it (float32, NCHW input, BatchNorm in
  training mode), its MultiBoxLoss structure (a Python loop over images, each matched by its own jaccard with a
  Python loop over faces to force every face's best prior, encoding of every prior, OHEM by a double sort over the
  batch, smooth L1 for boxes and landmarks, cross-entropy) and ``torch.optim.SGD``. It computes the suite's loss
  recipe (synth-cpu: IoU 0.5/0.3 with an ignored band, OHEM 3:1 with at least 3 negatives per image), so both steps
  compute the same losses; the record holds their difference. Its input arrives as a float32 NCHW tensor (biubug6's
  workers make it), the suite's as the uint8 batch the engine receives. The suite rows run the engine's own
  ``retina.engine._step`` on a session built by the engine (``_context``, ``_session``): as before issue 23 (its
  matching, losses and optimiser on every intra-op thread), as it is, then with one option changed each: model in
  channels-last, fused SGD, bf16 autocast (``RunSpec.cpu_bf16``, where the CPU has bf16 instructions),
  ``torch.compile`` (``--compile``: minutes of compiling, timed).
- ``parts``: matching, OHEM and the optimiser alone, on the same batch: what the suite keeps against the
  alternatives measured for issue 23 (each checked to give the same result).
- ``data``: CPU ms per image of each data-pipeline stage (read, crop, photometric, resize, flip, collate) in one
  thread, on this checkout and on the code before issue 23 (``--before``, default the commit before it, exported
  with ``git archive`` to a temporary folder).
- ``e2e``: real training runs (``retina.engine.train``, ``--e2e-iterations`` each, in fresh processes via
  ``benchmarks/_train_run.py``), the code before issue 23 and this checkout, interleaved over ``--e2e-rounds``:
  the median wall and CPU time (of the training process; its loader workers' is not in it) from one step's start
  to the next, i.e. of a whole iteration with its data, after the first logged interval (start-up), and on this
  checkout the loop's stage breakdown (``retina.stages.StageTimer``: data wait, input, forward, assign, loss,
  backward, optimizer, log, checkpoint). Loader-worker counts (0, 1 and 2 beside the default: what
  ``loader_workers`` rests on) and bf16 are rows of this table too.
- ``ap`` (not run by default: tens of minutes): what bf16 autocast does to AP. The landmarks ablation's +Lpts row in
  its CPU setting (1000 iterations of batch 8 at 256 px from the shared backbone, one thread per run, runs in
  parallel as ``--jobs`` does), float32 and bf16 for each of ``--ap-seeds``, each evaluated on the ablation pair's
  val split with the setting's protocol. Runs are kept under ``--ap-out`` and resumed or reused.

Writes ``results/benchmarks/train_speed.json``; ``--publish`` writes it to
``reports/records/train_speed/<machine>.json`` (committed; the report's training-speed section shows it). Timings
on a machine shared with other work are noisy: compare rows of one run, not runs.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from a checkout

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import box_convert

from benchmarks.publishing import add_allow_dirty, require_clean
from benchmarks.timing import all_cores, interleaved, machine_tag
from retina.coding import encode_boxes, encode_landmarks
from retina.config import TRAIN_PRESETS, LossCfg, TrainCfg, preset
from retina.losses import Assigned, losses, weighted_total
from retina.matching import IGNORED, NEGATIVE, POSITIVE, hard_negatives
from retina.models.detector import Predictions
from retina.results import REPO_ROOT, provenance, write_json

BEFORE = "0122c47dcaaadb73082784cad3183a57886985b3"  # main before issue 23
RECORD = REPO_ROOT / "results" / "benchmarks" / "train_speed.json"
PUBLISHED = REPO_ROOT / "reports" / "records" / "train_speed"
STEP_GOAL, E2E_GOAL = 0.6, 1.7  # issue 23: step <= 0.6x biubug6-style; synth-cpu iteration >= 1.7x faster


@dataclasses.dataclass(frozen=True)
class Setting:
    name: str
    batch: int
    size: int
    threads: int | None  # torch intra-op threads (None: torch's default, as `retina train` runs)
    workers: int | None  # data-loader workers as the suite runs this setting (None: `retina train`'s default)
    workers_before: int  # ... and as it ran it before issue 23 (`retina train` then defaulted to 2)
    what: str

    def train_cfg(self) -> TrainCfg:
        base = TRAIN_PRESETS["synth-cpu"]
        augment = dataclasses.replace(base.augment, image_size=self.size)
        return dataclasses.replace(base, batch_size=self.batch, augment=augment)


SETTINGS = {
    "synth-cpu": Setting(
        name="synth-cpu",
        batch=16,
        size=384,
        threads=None,
        workers=None,
        workers_before=2,
        what="retina train --recipe synth-cpu: batch 16 at 384 px, default threads, default loader workers",
    ),
    "ablation": Setting(
        name="ablation",
        batch=8,
        size=256,
        threads=1,
        workers=0,
        workers_before=0,
        what="one ablations/run.py job (--jobs = cores): batch 8 at 256 px, 1 thread, 0 workers",
    ),
}


def split_root(setting: Setting) -> Path:
    """The SynthFace train split a setting trains on (generated on first use, minutes)."""
    if setting.name == "ablation":
        from ablations.run import synth_pair
        from ablations.variants import SYNTH_ABLATION, SynthData

        return synth_pair(SynthData(SYNTH_ABLATION))[0]
    from retina.synth.splits import default_split

    return default_split("train")


# --- the biubug6-style step (a re-creation of its structure, with the suite's loss recipe) -------------------


def jaccard(truths: Tensor, boxes: Tensor) -> Tensor:
    """(N, 4) x (A, 4) xyxy -> IoU (N, A), by expanded corners as the older ports write it."""
    n, a = truths.size(0), boxes.size(0)
    max_xy = torch.min(truths[:, 2:].unsqueeze(1).expand(n, a, 2), boxes[:, 2:].unsqueeze(0).expand(n, a, 2))
    min_xy = torch.max(truths[:, :2].unsqueeze(1).expand(n, a, 2), boxes[:, :2].unsqueeze(0).expand(n, a, 2))
    inter = torch.clamp(max_xy - min_xy, min=0)
    inter = inter[:, :, 0] * inter[:, :, 1]
    area_t = ((truths[:, 2] - truths[:, 0]) * (truths[:, 3] - truths[:, 1])).unsqueeze(1).expand_as(inter)
    area_b = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).unsqueeze(0).expand_as(inter)
    return inter / (area_t + area_b - inter)


def biubug6_match(target: Any, priors: Tensor, variances: tuple[float, float], cfg: LossCfg) -> tuple[Tensor, ...]:
    """One image: labels (A,), box (A, 4) and landmark (A, 10) targets, landmark flags (A,)."""
    a = priors.size(0)
    truths = target.boxes
    if truths.size(0) == 0:
        return torch.zeros(a, dtype=torch.long), priors.new_zeros(a, 4), priors.new_zeros(a, 10), torch.zeros(a) > 0
    overlaps = jaccard(truths, box_convert(priors, "cxcywh", "xyxy"))
    best_prior_overlap, best_prior_idx = overlaps.max(1)
    best_truth_overlap, best_truth_idx = overlaps.max(0)
    valid = best_prior_overlap >= max(cfg.min_best_iou, 1e-12)
    best_truth_overlap.index_fill_(0, best_prior_idx[valid], 2.0)  # every face keeps its best prior
    for j in range(best_prior_idx.size(0)):
        if valid[j]:
            best_truth_idx[best_prior_idx[j]] = j
    conf = torch.full((a,), POSITIVE, dtype=torch.long)
    conf[best_truth_overlap < cfg.pos_iou] = IGNORED
    conf[best_truth_overlap < cfg.neg_iou] = NEGATIVE
    matched = truths[best_truth_idx]
    centre = ((matched[:, :2] + matched[:, 2:]) / 2 - priors[:, :2]) / (variances[0] * priors[:, 2:])
    size = torch.log((matched[:, 2:] - matched[:, :2]) / priors[:, 2:]) / variances[1]
    points = target.landmarks[best_truth_idx]
    landm = ((points - priors[:, None, :2]) / (variances[0] * priors[:, None, 2:])).reshape(a, 10)
    return conf, torch.cat([centre, size], 1), landm, target.has_landmarks[best_truth_idx]


def biubug6_loss(pred: Predictions, targets: Sequence[Any], priors: Tensor, cfg: LossCfg) -> dict[str, Tensor]:
    """MultiBoxLoss's structure: targets filled image by image, OHEM by a double sort, sums over the positives."""
    num, a = pred.logits.size(0), priors.size(0)
    loc_t, landm_t = torch.zeros(num, a, 4), torch.zeros(num, a, 10)
    conf_t, has_t = torch.zeros(num, a, dtype=torch.long), torch.zeros(num, a, dtype=torch.bool)
    for idx in range(num):
        conf_t[idx], loc_t[idx], landm_t[idx], has_t[idx] = biubug6_match(targets[idx], priors, (0.1, 0.2), cfg)
    pos = conf_t > 0
    pos1 = pos & has_t
    loss_landm = F.smooth_l1_loss(pred.landmarks[pos1], landm_t[pos1], reduction="sum")
    loss_l = F.smooth_l1_loss(pred.boxes[pos], loc_t[pos], reduction="sum")
    batch_conf = pred.logits.reshape(-1, 2)
    x_max = batch_conf.detach().max()
    lse = torch.log(torch.sum(torch.exp(batch_conf - x_max), 1, keepdim=True)) + x_max
    loss_c = (lse - batch_conf.gather(1, conf_t.clamp(min=0).view(-1, 1))).detach()
    loss_c[(conf_t != NEGATIVE).view(-1, 1)] = 0  # positives and ignored anchors are no negatives
    loss_c = loss_c.view(num, -1)
    _, loss_idx = loss_c.sort(1, descending=True)
    _, idx_rank = loss_idx.sort(1)
    num_pos = pos.long().sum(1, keepdim=True)
    num_neg = torch.clamp(cfg.ohem_ratio * num_pos.clamp(min=1), max=a - 1)
    neg = (idx_rank < num_neg.expand_as(idx_rank)) & (conf_t == NEGATIVE)
    chosen = pos | neg
    loss_cls = F.cross_entropy(pred.logits[chosen], conf_t[chosen], reduction="sum")
    n, n1 = max(float(num_pos.sum()), 1.0), max(float(pos1.sum()), 1.0)
    return {"cls": loss_cls / n, "box": loss_l / n, "landmarks": loss_landm / n1}


def biubug6_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, x: Tensor, targets: Sequence[Any],
                 priors: Tensor, cfg: LossCfg) -> dict[str, Tensor]:  # fmt: skip
    model.train()
    parts = biubug6_loss(model(x), targets, priors, cfg)
    optimizer.zero_grad()
    weighted_total(parts, cfg).backward()
    optimizer.step()
    return parts


# --- alternatives measured for issue 23 and not kept (the ``parts`` section) --------------------------------


def padded_assign(targets: Sequence[Any], priors: Tensor, variances: tuple[float, float], cfg: LossCfg) -> Assigned:
    """The whole batch matched at once: faces padded to the batch's largest count, one (B, N, A) IoU tensor.
    Equal to ``retina.losses.assign`` to the bit, but the padding multiplies the IoU work on crowded batches."""
    b, a = len(targets), priors.shape[0]
    n = max(1, *(len(t.boxes) for t in targets))
    boxes, points = torch.zeros(b, n, 4), torch.zeros(b, n, 5, 2)
    has, valid = torch.zeros(b, n, dtype=torch.bool), torch.zeros(b, n, dtype=torch.bool)
    for i, t in enumerate(targets):
        k = len(t.boxes)
        boxes[i, :k], points[i, :k], has[i, :k], valid[i, :k] = t.boxes, t.landmarks, t.has_landmarks, True
    anchors = box_convert(priors, "cxcywh", "xyxy")
    area1 = (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])
    area2 = (anchors[:, 2] - anchors[:, 0]) * (anchors[:, 3] - anchors[:, 1])
    lt = torch.max(boxes[..., None, :2], anchors[:, :2])
    rb = torch.min(boxes[..., None, 2:], anchors[:, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    iou = (inter / (area1[..., None] + area2 - inter)).masked_fill_(~valid[..., None], -1.0)
    best, face = iou.max(dim=1)
    labels = torch.full((b, a), NEGATIVE, dtype=torch.long)
    labels[best >= cfg.neg_iou] = IGNORED
    labels[best >= cfg.pos_iou] = POSITIVE
    best_anchor_iou, best_anchor = iou.max(dim=2)
    forced = best_anchor_iou >= max(cfg.min_best_iou, 1e-12)
    flat = (best_anchor + a * torch.arange(b)[:, None])[forced]
    winner = torch.full((b * a,), -1, dtype=torch.long)
    winner.scatter_reduce_(0, flat, torch.arange(n).expand(b, -1)[forced], reduce="amax")  # the later face wins
    labels.view(-1)[winner >= 0] = POSITIVE
    face.view(-1)[winner >= 0] = winner[winner >= 0]
    some = valid.any(1)[:, None, None]
    box_t = torch.where(
        some, encode_boxes(torch.gather(boxes, 1, face[..., None].expand(b, a, 4)), priors, variances), 0.0
    )
    pts = torch.gather(points, 1, face[..., None, None].expand(b, a, 5, 2))
    lmk_t = torch.where(some, encode_landmarks(pts, priors, variances), 0.0)
    return Assigned(labels, box_t, lmk_t, (labels == POSITIVE) & torch.gather(has, 1, face), face)


def topk_hard_negatives(cls_loss: Tensor, labels: Tensor, ratio: float) -> Tensor:
    """OHEM by one ``topk`` of the largest k per image instead of a double sort (same set, barring equal losses)."""
    negative = labels == NEGATIVE
    k = (ratio * (labels == POSITIVE).sum(1, keepdim=True).clamp(min=1)).long().clamp(max=labels.shape[1] - 1)
    loss = cls_loss.detach().masked_fill(~negative, float("-inf"))
    _, top = loss.topk(int(k.max()), dim=1)
    chosen = torch.arange(top.shape[1]) < k
    return negative & torch.zeros_like(negative).scatter_(1, top, chosen)


# --- sections ----------------------------------------------------------------------------------------------


def _session(setting: Setting, root: Path, tmp: Path, **spec: Any) -> Any:
    from retina.data.dataset import SplitPaths
    from retina.engine import RunSpec, _context, _session

    run = RunSpec(out_dir=tmp, data=SplitPaths.from_root(root), workers=0, progress=False, **spec)
    return _session(_context(preset("mobilenet0.25"), setting.train_cfg(), run), None)


def _threads(setting: Setting) -> int:
    return setting.threads or (os.cpu_count() or 1)


def step_section(setting: Setting, root: Path, args: argparse.Namespace) -> dict[str, Any]:
    """The training-step table: biubug6-style, then the suite's step and its options, interleaved."""
    from retina.engine import _step, cpu_has_bf16
    from retina.preprocess import normalize

    torch.set_num_threads(_threads(setting))
    tmp = tempfile.TemporaryDirectory(prefix="retina-train-speed-")
    s = _session(setting, root, Path(tmp.name) / "suite")
    batch = next(iter(s.loader))
    images, targets = batch
    cfg, lr = s.ctx.train_cfg, s.ctx.train_cfg.lr
    state = copy.deepcopy(s.model.state_dict())

    def fresh(channels_last: bool = False, **sgd: Any) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
        model = copy.deepcopy(s.model)
        model.load_state_dict(state)
        if channels_last:
            model.to(memory_format=torch.channels_last)
        optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                                    **sgd)  # fmt: skip
        return model, optimizer

    def session(channels_last: bool = False, bf16: bool = False, compiled: bool = False, **sgd: Any) -> Any:
        model, optimizer = fresh(channels_last, **sgd)
        net = torch.compile(model) if compiled else model
        autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else s.autocast
        return dataclasses.replace(s, model=model, net=net, optimizer=optimizer, autocast=autocast)

    def suite(sess: Any, bookkeeping: bool = True) -> Callable[[], Any]:
        def run() -> Any:
            if bookkeeping:
                return _step(sess, batch, lr, losses, 0, None)[0]
            with _all_threads_bookkeeping():
                return _step(sess, batch, lr, losses, 0, None)[0]

        return run

    base_model, base_opt = fresh()
    x = normalize(images, s.ctx.model_cfg.input).contiguous()  # biubug6's workers hand over float32 NCHW
    priors = s.priors
    baseline = lambda: biubug6_step(base_model, base_opt, x, targets, priors, cfg.loss)  # noqa: E731
    mixed_model, mixed_opt = fresh()

    def mixed() -> dict[str, Tensor]:  # the baseline's model and input with the suite's matching and loss
        mixed_model.train()
        pred = mixed_model(x)
        assigned = _assign(targets, priors, s)
        parts = losses(pred, assigned, cfg.loss, assigned.num_positive, assigned.num_landmarks)
        mixed_opt.zero_grad()
        weighted_total(parts, cfg.loss).backward()
        mixed_opt.step()
        return parts

    variants: dict[str, Callable[[], Any]] = {
        "biubug6-style step (NCHW float32, per-image MultiBoxLoss, SGD)": baseline,
        "  + the suite's matching and loss (retina.losses)": mixed,
        "suite step before issue 23 (bookkeeping on every thread)": suite(session(), bookkeeping=False),
        "suite step (engine _step: uint8 batch, channels-last input view)": suite(session()),
        "  option: model in channels-last too": suite(session(channels_last=True)),
        "  option: fused SGD": suite(session(fused=True)),
    }
    kept = {"suite step (engine _step: uint8 batch, channels-last input view)"}
    if cpu_has_bf16():
        variants["  option: bf16 autocast (--cpu-bf16; changes the numbers)"] = suite(session(bf16=True))
    compile_s = None
    if args.compile:
        compiled = session(compiled=True)
        start = time.perf_counter()
        suite(compiled)()
        compile_s = time.perf_counter() - start
        variants["  option: torch.compile (inductor)"] = suite(compiled)
    same = _same_losses(batch, s, state, priors)
    stats = interleaved(variants, args.rounds, args.warmup, cpu_clock=time.process_time)
    base = stats[next(iter(variants))]["median_ms"]
    rows = [
        {"variant": name.strip(), "kept": name in kept, **st, "x_biubug6": st["median_ms"] / base}
        for name, st in stats.items()
    ]
    for r in rows:
        print(f"  {setting.name:9s} {r['variant']:70s} {r['median_ms']:8.1f} ms  x{r['x_biubug6']:.2f}")
    tmp.cleanup()
    faces = [len(t.boxes) for t in targets]
    return {
        "rows": rows,
        "faces_per_image": faces,
        "losses_biubug6_vs_suite": same,
        "torch_compile_s": compile_s,
        "threads": torch.get_num_threads(),
    }


@contextlib.contextmanager
def _all_threads_bookkeeping() -> Iterator[None]:
    """The engine's step as before issue 23: matching, losses and the optimiser on every intra-op thread."""
    import retina.engine as engine

    kept = engine._bookkeeping
    engine._bookkeeping = lambda ctx: contextlib.nullcontext()
    try:
        yield
    finally:
        engine._bookkeeping = kept


def _assign(targets: Sequence[Any], priors: Tensor, s: Any) -> Assigned:
    from retina.losses import assign

    return assign(targets, priors, s.ctx.model_cfg.priors.variances, s.ctx.train_cfg.loss)


def _same_losses(batch: Any, s: Any, state: dict[str, Tensor], priors: Tensor) -> dict[str, float]:
    """The two steps' losses on the same weights and batch (relative differences: float32 rounding expected)."""
    from retina.preprocess import normalize

    images, targets = batch
    model = copy.deepcopy(s.model)
    model.load_state_dict(state)
    model.train()
    x = normalize(images, s.ctx.model_cfg.input)
    with torch.no_grad():
        theirs = biubug6_loss(model(x.contiguous()), targets, priors, s.ctx.train_cfg.loss)
        model.load_state_dict(state)  # BatchNorm running statistics moved: start again
        assigned = _assign(targets, priors, s)
        ours = losses(model(x), assigned, s.ctx.train_cfg.loss, assigned.num_positive, assigned.num_landmarks)
    return {k: abs(float(theirs[k]) - float(ours[k])) / max(abs(float(ours[k])), 1e-12) for k in ours}


def parts_section(setting: Setting, root: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Matching, OHEM and the optimiser alone on the setting's first batch: kept vs measured alternatives."""
    from retina.losses import assign

    torch.set_num_threads(_threads(setting))
    with tempfile.TemporaryDirectory(prefix="retina-train-speed-") as tmp:
        s = _session(setting, root, Path(tmp) / "parts")
        _, targets = next(iter(s.loader))
    priors, cfg, v = s.priors, s.ctx.train_cfg.loss, s.ctx.model_cfg.priors.variances
    ours, padded = assign(targets, priors, v, cfg), padded_assign(targets, priors, v, cfg)
    checks = {"padded_assign_equal": all(torch.equal(getattr(ours, f.name), getattr(padded, f.name))
                                         for f in dataclasses.fields(Assigned))}  # fmt: skip
    g = torch.Generator().manual_seed(0)
    cls = torch.rand(ours.labels.shape, generator=g)  # distinct values: both OHEMs pick the same set
    checks["topk_ohem_equal"] = bool(torch.equal(hard_negatives(cls, ours.labels, cfg.ohem_ratio),
                                                 topk_hard_negatives(cls, ours.labels, cfg.ohem_ratio)))  # fmt: skip
    model = s.model
    grads = [torch.randn_like(p) for p in model.parameters()]
    optimizers = {}
    for name, opts in (("for-loop", {"foreach": False}), ("foreach", {"foreach": True}), ("fused", {"fused": True})):
        m = copy.deepcopy(model)
        for p, grad in zip(m.parameters(), grads, strict=True):
            p.grad = grad.clone()
        optimizers[name] = torch.optim.SGD(m.parameters(), lr=1e-3, momentum=0.9, weight_decay=5e-4, **opts)
    sections = {
        "matching": {
            "per image (retina.losses.assign, kept)": lambda: assign(targets, priors, v, cfg),
            "whole batch, faces padded (rejected)": lambda: padded_assign(targets, priors, v, cfg),
            "biubug6-style per image, Python loop over faces": lambda: [
                biubug6_match(t, priors, v, cfg) for t in targets
            ],
        },
        "ohem": {
            "double sort (retina.matching.hard_negatives, kept)": lambda: hard_negatives(cls, ours.labels, 3.0),
            "one topk (not kept: <1% of a step)": lambda: topk_hard_negatives(cls, ours.labels, 3.0),
        },
        "optimizer": {f"SGD {k}": o.step for k, o in optimizers.items()},
    }
    out: dict[str, Any] = {"checks": checks, "faces": sum(len(t.boxes) for t in targets), "rows": []}
    for section, variants in sections.items():
        for name, st in interleaved(variants, args.rounds * 3, args.warmup, cpu_clock=time.process_time).items():
            out["rows"].append({"section": section, "variant": name, **st})
            print(f"  {setting.name:9s} {section:9s} {name:55s} {st['median_ms']:8.2f} ms")
    return out


def export_tree(rev: str, into: Path) -> Path | None:
    """The ``retina`` package at commit ``rev`` under ``into`` (None when git cannot give it)."""
    try:
        archive = subprocess.run(["git", "archive", rev, "retina"], cwd=REPO_ROOT, capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        print(f"cannot export {rev} ({exc}): the before-issue-23 rows are left out", file=sys.stderr)
        return None
    return into


def run_tree(tree: Path, mode: str, job: dict[str, Any]) -> dict[str, Any]:
    """``benchmarks/_train_run.py`` in a fresh interpreter that imports ``retina`` from ``tree``."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("_train_run.py")), mode, json.dumps(job)],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"{mode} run on {tree} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def data_section(setting: Setting, root: Path, trees: dict[str, Path], args: argparse.Namespace) -> dict[str, Any]:
    out = {}
    for name, tree in trees.items():
        out[name] = run_tree(tree, "data", {"root": str(root), "size": setting.size, "images": args.data_images})
        total = sum(out[name]["cpu_ms_per_image"].values())
        print(f"  {setting.name:9s} data, {name:6s}: {total:6.2f} ms per image (one thread)")
    return out


def e2e_configs(setting: Setting, bf16: bool) -> list[tuple[str, str, dict[str, Any]]]:
    """(label, tree, run settings): the suite's way of running the setting, before and now, then options."""
    from retina.engine import loader_workers

    now = setting.workers if setting.workers is not None else loader_workers("cpu", all_cores())
    plain = {"workers": now, "threads": setting.threads}
    rows = [("before issue 23", "before", {**plain, "workers": setting.workers_before}), ("now", "now", plain)]
    if setting.workers is None:  # the default's alternatives
        rows += [(f"now, {w} workers", "now", {**plain, "workers": w}) for w in (0, 1, 2) if w != now]
    if bf16:
        rows.append(("now, bf16 autocast (--cpu-bf16)", "now", {**plain, "cpu_bf16": True}))
    return rows


def e2e_section(setting: Setting, root: Path, trees: dict[str, Path], args: argparse.Namespace) -> dict[str, Any]:
    from retina.engine import cpu_has_bf16

    configs = [c for c in e2e_configs(setting, cpu_has_bf16()) if c[1] in trees]
    runs: dict[str, list[dict[str, Any]]] = {label: [] for label, _, _ in configs}
    for _ in range(args.e2e_rounds):
        for label, tree, extra in configs:
            job = {"root": str(root), "batch": setting.batch, "size": setting.size,
                   "iterations": args.e2e_iterations, "log_every": args.log_every, **extra}  # fmt: skip
            runs[label].append({**run_tree(trees[tree], "train", job), "settings": extra})
    rows = []
    for label, results in runs.items():
        wall = statistics.median(r["iteration_wall_ms"] for r in results)
        rows.append({"config": label, "images_per_s": 1e3 * setting.batch / wall, "iteration_wall_ms": wall,
                     "iteration_cpu_ms": statistics.median(r["iteration_cpu_ms"] for r in results),
                     "settings": results[0]["settings"], "threads": results[0]["threads"]})  # fmt: skip
    base = next((r for r in rows if r["config"] == "before issue 23"), None)
    for r in rows:
        r["x_before"] = base["iteration_wall_ms"] / r["iteration_wall_ms"] if base else None
        r["x_before_cpu"] = base["iteration_cpu_ms"] / r["iteration_cpu_ms"] if base else None
        ratio = f"x{r['x_before']:.2f} (CPU x{r['x_before_cpu']:.2f})" if base else ""
        print(f"  {setting.name:9s} e2e {r['config']:36s} {r['images_per_s']:7.2f} img/s  {ratio}")
    profile = _median_profile(runs.get("now", []))
    return {"rows": rows, "profile": profile, "runs": runs}


def _median_profile(results: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The stage breakdown of the run with the median iteration time."""
    found = [r["stages"] for r in results if r.get("stages", {}).get("stages")]
    if not found:
        return None
    return sorted(found, key=lambda p: p["iteration_wall_ms"])[len(found) // 2]


def _ap_job(job: tuple[str, int, bool]) -> dict[str, Any]:
    """Train (or reuse) and evaluate one run of the ``ap`` section, in a process of its own."""
    from ablations.run import synth_pair
    from ablations.variants import ABLATIONS
    from retina.api import Detector
    from retina.data.dataset import SplitPaths
    from retina.engine import RunSpec, train
    from retina.evaluate import EvalSplit, evaluate_detector

    out, seed, bf16 = Path(job[0]), job[1], job[2]
    ablation = ABLATIONS["landmarks"]
    setting = ablation.cpu
    variant = next(v for v in ablation.variants(setting) if v.key == "lpts")
    train_dir, val_dir = synth_pair(setting.data)
    run_dir = out / f"{'bf16' if bf16 else 'fp32'}_seed{seed}"
    spec = RunSpec(out_dir=run_dir, data=SplitPaths.from_root(train_dir), workers=0, checkpoint_every=100,
                   resume=True, pretrained_backbone=setting.backbone_init, progress=False, cpu_bf16=bf16,
                   data_label=setting.data.label)  # fmt: skip
    record = train(variant.model, dataclasses.replace(variant.train, seed=seed), spec)
    detector = Detector.from_checkpoint(run_dir / "final.pth")
    split = EvalSplit.from_root(val_dir, label=f"{setting.data.label}, val split")
    result, _ = evaluate_detector(detector, split, run_dir / "eval", setting.protocol, progress=False)
    return {
        "seed": seed,
        "bf16": bf16,
        "ap": result.ap,
        "hard_map": result.hard_map_50_95,
        "train_wall_s": record["wall_time_s_this_process"],
        "trained_at": record["provenance"]["git"],  # a reused run's own commit (runs are kept and reused)
        "reused": bool(record.get("nothing_to_do")),
        "final_losses": record["final_losses"],
        "run_dir": str(run_dir),
    }


def ap_section(args: argparse.Namespace) -> dict[str, Any]:
    """float32 and bf16 runs of the landmarks ablation's +Lpts row, seed by seed, with their AP."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    jobs = [(str(args.ap_out), seed, bf16) for seed in args.ap_seeds for bf16 in (False, True)]
    workers = min(len(jobs), os.cpu_count() or 1)
    ctx = mp.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=torch.set_num_threads, initargs=(1,)) as pool:
        runs = list(pool.map(_ap_job, jobs))
    diffs = {}
    for key in ("easy", "medium", "hard"):
        pairs = [(a["ap"][key], b["ap"][key]) for a in runs for b in runs
                 if not a["bf16"] and b["bf16"] and a["seed"] == b["seed"]]  # fmt: skip
        diffs[key] = statistics.fmean(b - a for a, b in pairs)
    for r in runs:
        kind = "bf16" if r["bf16"] else "fp32"
        print(f"  ap {kind} seed {r['seed']}: " + " ".join(f"{k} {100 * v:.2f}" for k, v in r["ap"].items()))
    print("  ap bf16 - fp32 (mean over seeds, points): " + " ".join(f"{k} {100 * v:+.2f}" for k, v in diffs.items()))
    return {"what": "landmarks ablation, +Lpts row, CPU setting", "runs": runs, "bf16_minus_fp32": diffs}


def goals(record: dict[str, Any]) -> dict[str, Any]:
    """Issue 23's two targets, read off this record."""
    out: dict[str, Any] = {"step_goal_x_biubug6": STEP_GOAL, "e2e_goal_x_before": E2E_GOAL}
    for name, section in record["settings"].items():
        step = section.get("step")
        if step:
            by = {r["variant"]: r for r in step["rows"]}
            out[f"{name}_step_x_biubug6"] = by["suite step (engine _step: uint8 batch, channels-last input view)"][
                "x_biubug6"
            ]
            suite = [r for r in step["rows"] if r["kept"] or r["variant"].startswith("option")]
            best = min(suite, key=lambda r: r["x_biubug6"])
            out[f"{name}_best_step_option"] = {"variant": best["variant"], "x_biubug6": best["x_biubug6"]}
        e2e = section.get("e2e")
        if e2e:
            by = {r["config"]: r for r in e2e["rows"]}
            if by.get("now", {}).get("x_before"):
                out[f"{name}_iteration_x_before"] = by["now"]["x_before"]
                out[f"{name}_iteration_x_before_cpu"] = by["now"]["x_before_cpu"]
                best = max(e2e["rows"], key=lambda r: r["images_per_s"])
                out[f"{name}_best_iteration"] = {"config": best["config"], "x_before": best["x_before"]}
    if "bf16_ap" in record:
        out["bf16_minus_fp32_ap"] = record["bf16_ap"]["bf16_minus_fp32"]
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--settings", default="synth-cpu,ablation", help=f"comma-separated, of {', '.join(SETTINGS)}")
    p.add_argument("--sections", default="step,parts,data,e2e", help="comma-separated: step, parts, data, e2e")
    p.add_argument("--rounds", type=int, default=8, help="interleaved rounds of the step table")
    p.add_argument("--warmup", type=int, default=2, help="untimed calls of each variant first")
    p.add_argument("--e2e-rounds", type=int, default=2, help="interleaved rounds of the training runs")
    p.add_argument("--e2e-iterations", type=int, default=30, help="iterations of each training run")
    p.add_argument("--log-every", type=int, default=5, help="metrics interval of the runs (the first is left out)")
    p.add_argument("--data-images", type=int, default=64, help="images of the data-pipeline section")
    p.add_argument("--before", default=BEFORE, help="the commit to compare with (default: main before issue 23)")
    p.add_argument("--compile", action="store_true", help="also a torch.compile row (minutes of compiling)")
    p.add_argument("--ap-seeds", type=int, nargs="+", default=[0, 1], help="seeds of the ap section")
    p.add_argument("--ap-out", type=Path, default=REPO_ROOT / "results" / "benchmarks" / "train_speed_ap")
    p.add_argument("--out", type=Path, default=RECORD)
    p.add_argument("--publish", action="store_true", help=f"write {PUBLISHED.relative_to(REPO_ROOT)}/<machine>.json")
    add_allow_dirty(p)
    args = p.parse_args(argv)
    if args.publish:
        require_clean(p, "benchmarks/train_speed.py --publish", args.allow_dirty)
    settings = [SETTINGS[n] for n in args.settings.split(",") if n]
    sections = set(args.sections.split(","))
    if args.e2e_iterations <= 2 * args.log_every or min(args.rounds, args.e2e_rounds) < 1:
        p.error("--e2e-iterations must exceed two --log-every intervals; rounds must be >= 1")
    out = PUBLISHED / f"{machine_tag()}.json" if args.publish else args.out
    prov = provenance(load_avg_before=list(os.getloadavg()))  # before the run: the code that ran
    record: dict[str, Any] = {
        "benchmark": "train_speed",
        "data": "SynthFace (SYNTHETIC data): the default train split (synth-cpu) and the ablation pair's train split",
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "settings": {},
    }
    with tempfile.TemporaryDirectory(prefix="retina-before-") as tmp:
        trees = {"now": REPO_ROOT}
        if sections & {"data", "e2e"}:
            before = export_tree(args.before, Path(tmp))
            if before is not None:
                trees = {"before": before, **trees}
        for setting in settings:
            root = split_root(setting)
            section: dict[str, Any] = {**dataclasses.asdict(setting), "split": str(root)}
            threads = torch.get_num_threads()
            if "step" in sections:
                section["step"] = step_section(setting, root, args)
            if "parts" in sections:
                section["parts"] = parts_section(setting, root, args)
            torch.set_num_threads(threads)
            if "data" in sections:
                section["data"] = data_section(setting, root, trees, args)
            if "e2e" in sections:
                section["e2e"] = e2e_section(setting, root, trees, args)
            record["settings"][setting.name] = section
    if "ap" in sections:
        record["bf16_ap"] = ap_section(args)
    record["goals"] = goals(record)
    record["provenance"] = {**prov, "load_avg_after": list(os.getloadavg())}
    write_json(out, record)
    print(json.dumps(record["goals"], indent=1))
    print(f"-> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
