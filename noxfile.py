"""Entry points of the suite: ``nox -s <session>``.

Sessions reuse the current Python environment (``venv_backend="none"``) so that the torch install the
README asks for is used as is; ``pip install -e .[dev]`` is the only set-up step.
"""

from __future__ import annotations

import nox

nox.options.default_venv_backend = "none"
nox.options.sessions = ["lint", "tests"]


@nox.session
def tests(session: nox.Session) -> None:
    """The test suite (what CI runs). Extra arguments go to pytest."""
    session.run("python", "-m", "pytest", "-q", *session.posargs)


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
    go to ``retina train``, e.g. ``nox -s train -- --preset mobilenet0.25 --data synth --out runs/m025``."""
    args = session.posargs or ["--out", "runs/mobilenet0.25_synthface"]
    session.run("retina", "train", *args)


@nox.session
def speed(session: nox.Session) -> None:
    """Speed tables (issue 6): fast-path ablation, the CPU (and GPU, if present) grid, then the report.

    Records go to results/speed/<machine>/, the tables and plot to results/speed/speed.{md,png}. Arguments
    after ``--`` go to the grid, e.g. ``nox -s speed -- --full`` (every cell; ResNet-152 4K on CPU takes
    minutes per repetition) or ``nox -s speed -- --settings cpu1 --presets mobilenet0.25``.
    """
    session.run("python", "benchmarks/speed.py", "fastpath")
    session.run("python", "benchmarks/speed.py", "grid", *session.posargs)
    session.run("python", "reports/speed.py")
