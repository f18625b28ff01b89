"""nox sessions. They run in the current environment (`pip install -e ".[dev]"` first): the torch stack is
several GB, so it is installed once rather than per session.

    nox -s tests   fast CPU test suite (what CI runs, with the PSNR gate)
    nox -s gate    PSNR/SSIM regression gate against reports/baseline.json
    nox -s eval    main job: evaluate the registered methods on cdd11-mini, regenerate reports/
    nox -s lint    ruff
    nox -s bench   pytest-benchmark microbenchmarks
"""

from __future__ import annotations

import nox

nox.options.default_venv_backend = "none"
nox.options.sessions = ["lint", "tests"]


@nox.session
def tests(session: nox.Session) -> None:
    session.run("python", "-m", "pytest", "-q", "-p", "no:cacheprovider", *session.posargs)


@nox.session
def gate(session: nox.Session) -> None:
    """PSNR/SSIM regression gate: re-evaluate the slice defined in reports/baseline.json and compare.

    `nox -s gate -- --update-baseline` rewrites the baseline deliberately (see `python -m harness.gates -h`).
    """
    session.run("python", "-m", "harness.gates", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    session.run("ruff", "check", "harness", "baselines", "vlur", "tests", "benchmarks", "experiments", "noxfile.py")


@nox.session
def bench(session: nox.Session) -> None:
    session.run("python", "-m", "pytest", "benchmarks", "--benchmark-only", "-p", "no:cacheprovider",
                "-o", "addopts=", *session.posargs)


@nox.session(name="eval")
def eval_(session: nox.Session) -> None:
    session.run("python", "-m", "harness.regenerate", *session.posargs)
    session.run("python", "-m", "pytest", "-q", "-m", "slow", "-p", "no:cacheprovider", "-o",
                "addopts=--benchmark-skip")
