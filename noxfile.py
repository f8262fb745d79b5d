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
    """Evaluate predictions with the official WIDER FACE protocol (``retina widerface-eval``)."""
    session.run("retina", "widerface-eval", *session.posargs)
