"""Entry points of the suite: ``nox -s <session>``.

Sessions reuse the current Python environment (``venv_backend="none"``) so that the torch install the
README asks for is used as is; ``pip install -e .[dev]`` is the only set-up step.
"""

from __future__ import annotations

import nox

nox.options.default_venv_backend = "none"
nox.options.sessions = ["lint", "tests"]


def with_default_out(args: list[str], out: str) -> list[str]:
    """``args`` plus ``--out out`` unless they give an ``--out`` (as ``--out DIR`` or ``--out=DIR``)."""
    given = any(a == "--out" or a.startswith("--out=") for a in args)
    return list(args) if given else [*args, "--out", out]


@nox.session
def tests(session: nox.Session) -> None:
    """The test suite (what CI runs; the slowest tests' timings are printed). Extra arguments go to pytest,
    e.g. ``nox -s tests -- -m "not slow"`` for the quick part."""
    session.run("python", "-m", "pytest", "-q", "--durations=12", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff: lint and format check."""
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def widerface_eval(session: nox.Session) -> None:
    """Detect + evaluate (``retina evaluate``). No arguments: the committed SynthFace checkpoint on SynthFace
    val. Real WIDER FACE: ``nox -s widerface_eval -- --data-root PATH --weights W --protocol fixed``."""
    session.run("retina", "evaluate", *session.posargs)


@nox.session
def train(session: nox.Session) -> None:
    """``retina train`` (default: mobilenet0.25, the synth-cpu recipe on SynthFace). Arguments after ``--``
    go to ``retina train``, e.g. ``nox -s train -- --preset mobilenet0.25 --data synth --out runs/m025``; without
    ``--out`` the run goes to runs/mobilenet0.25_synthface."""
    session.run("retina", "train", *with_default_out(session.posargs, "runs/mobilenet0.25_synthface"))


@nox.session
def speed(session: nox.Session) -> None:
    """Speed tables (issue 6): fast-path ablation, the CPU (and GPU, if present) grid, then the report.

    Records go to results/speed/<machine>/, the tables and plot to results/speed/speed.{md,png}. Arguments
    after ``--`` go to the grid, e.g. ``nox -s speed -- --full`` (every cell; ResNet-152 4K on CPU takes
    minutes per repetition) or ``nox -s speed -- --settings cpu1 --presets mobilenet0.25``.
    """
    session.run("python", "benchmarks/speed.py", "fastpath")
    session.run("python", "benchmarks/speed.py", "grid", *session.posargs)
    session.run("python", "-m", "retina.report.speed")


@nox.session
def landmarks(session: nox.Session) -> None:
    """Landmark accuracy, RetinaFace vs MTCNN (paper section 4.5): NME, CED, failure rate on SynthFace val.

    MTCNN needs its weights: ``nox -s landmarks -- --mtcnn-weights DIR`` (DIR holding pnet.pt, rnet.pt, onet.pt,
    facenet-pytorch 2.6.0's data/ folder). A user's split: ``-- --data-root SPLIT --weights W``."""
    session.run("retina", "landmarks", *session.posargs)


@nox.session
def train_arcface(session: nox.Session) -> None:
    """Train the small ArcFace (mobilefacenet-s, recipe synth-cpu) on the SynthFace-ID train split (generated on
    first use); ``python benchmarks/embedded_arcface.py --run runs/arcface_synthface_id`` packages it."""
    session.run("retina", "train-arcface", *with_default_out(session.posargs, "runs/arcface_synthface_id"))


@nox.session
def verification(session: nox.Session) -> None:
    """Face verification by alignment source (paper table 4) on SynthFace-ID with the committed ArcFace.

    Rows none / RetinaFace / ground truth, plus MTCNN with ``-- --mtcnn-weights DIR``; LFW with
    ``-- --lfw-pairs pairs.txt --lfw-images DIR``, an ONNX model with ``-- --onnx MODEL``."""
    session.run("retina", "verification", *session.posargs)


@nox.session
def report(session: nox.Session) -> None:
    """The report page from records only (results/ and reports/records/) -> results/report/report.md.

    ``nox -s report -- --run-missing`` first runs, at CPU scale, the jobs whose records are missing;
    ``nox -s report -- --publish`` rebuilds docs/report.md from the committed records (reports/records/)."""
    session.run("retina", "report", *session.posargs)


@nox.session
def mutation(session: nox.Session) -> None:
    """Mutation testing (mutmut, ``pip install -e .[mutation]``) of the core numeric and landmark modules: per module
    the mutants the tests catch, the survivors and the listed equivalent ones -> results/mutation/mutation.json.
    Not part of CI (about 20 min on 2 cores). ``-- --modules losses api`` for some modules, ``-- --publish`` to copy
    the record into reports/records/mutation/."""
    session.run("python", "benchmarks/mutation.py", *session.posargs)


def _ablation(session: nox.Session, name: str) -> None:
    """``python -m ablations.run <name> ARGS``; ``--nproc-per-node N`` among ARGS launches it under torchrun."""
    _ablation_args(session, name, list(session.posargs))


def _ablation_args(session: nox.Session, name: str, args: list[str]) -> None:
    if "--nproc-per-node" in args:
        k = args.index("--nproc-per-node")
        nproc = args[k + 1]
        del args[k : k + 2]
        session.run("torchrun", f"--nproc_per_node={nproc}", "-m", "ablations.run", name, *args)
    else:
        session.run("python", "-m", "ablations.run", name, *args)


@nox.session
def ablation_landmarks(session: nox.Session) -> None:
    """Landmark loss weight 0 vs 0.1 (paper Table 3 "+Lpts"). No arguments: the CPU setting on SynthFace, 5 seeds,
    about 21 min on 2 cores; results in results/ablations/landmarks/ (``-- --publish`` also copies them into
    reports/records/). Paper setting on WIDER FACE with 4 GPUs:
    ``nox -s ablation_landmarks -- --setting paper --data-root TRAIN --val-root VAL --device cuda
    --pretrained-backbone R50.pth --nproc-per-node 4`` (see ``python -m ablations.run --help``)."""
    _ablation(session, "landmarks")


@nox.session
def ablation_dcn(session: nox.Session) -> None:
    """DCN off vs on (paper Table 3 "+DCN"), and on with the offsets frozen at zero (the control); arguments as for
    ``ablation_landmarks``. The CPU setting has its own, shorter schedule (a DCN step is ~15x slower on a CPU), 3
    seeds; the three rows took 3,309 s (55 min) on 2 cores with ``--real-dev``; results in results/ablations/dcn/."""
    _ablation(session, "dcn")


@nox.session
def ablation_mesh(session: nox.Session) -> None:
    """The dense branch's pixel loss (paper Table 3 rows FPN+Context / +Lpts / +Lpixel / +Lpts +Lpixel), every row
    with the mesh head; arguments as for ``ablation_landmarks``. The CPU setting: 1,000 iterations, 3 seeds, and
    the dense NME of the predicted meshes on SynthFace val as a column, 1,926 s (32 min) on 2 cores with
    ``--real-dev``; results in results/ablations/mesh/."""
    _ablation(session, "mesh")


@nox.session
def ablation_synth(session: nox.Session) -> None:
    """Which SynthFace v3 factors make a CPU-trained detector find real faces (issue 24): one row per factor switched
    off, from random initialisation, evaluated on SynthFace val and on the real development set (``--real-dev``,
    from ../shared; a user's WIDER val with ``-- --real-root WIDER``); 7 rows x 3 seeds took 4,571 s on 2 cores (data
    generation included); results in results/ablations/synth/."""
    args = list(session.posargs)
    if "--real-root" not in args and "--real-dev" not in args:
        args.append("--real-dev")
    _ablation_args(session, "synth", args)


@nox.session
def real_transfer(session: nox.Session) -> None:
    """Checkpoints on real WIDER FACE images (the development set from ../shared, or ``-- --wider-root WIDER``):
    AP, recall by face size, false positives per image, the sample photos; SynthFace val AP beside it."""
    session.run("python", "benchmarks/real_transfer.py", *session.posargs)
