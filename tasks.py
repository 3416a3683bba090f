"""Set up and run cmc-kg with nothing but Python 3.11 and pip: `python3 tasks.py serve` or `python3 tasks.py test`.

Both create .venv/ and install the project into it first, at the versions of constraints.txt (skipped when
neither pyproject.toml nor constraints.txt has changed);
`test` also installs the Debian packages the tests drive (Chromium, roqet, Java, strace, nginx, Virtuoso)
when they are missing, and runs `lint` (ruff and mypy, configured in pyproject.toml) beside pytest; options after `test` go
to pytest (`python3 tasks.py test -m "not slow"`: the fast subset).
"""

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import venv
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
# Exact versions of every dependency: the inferences and dumps are then byte-identical on every fresh install.
CONSTRAINTS = "constraints.txt"


def setup() -> None:
    if not (BIN / "python").exists():
        print("creating .venv", file=sys.stderr)
        venv.create(VENV, with_pip=True)
    stamp = VENV / ".cmc-kg-installed"
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + (ROOT / CONSTRAINTS).read_bytes()).hexdigest()
    if not stamp.exists() or stamp.read_text() != wanted:
        print("installing cmc-kg and its dependencies into .venv", file=sys.stderr)
        pip = [str(BIN / "python"), "-m", "pip", "install", "--quiet", "-c", str(ROOT / CONSTRAINTS)]
        for what in (["pip"], ["-e", f"{ROOT}[test]"]):
            # setuptools prints warning banners (about editable installs) that look like errors on a first
            # install; pip's output is shown only when it fails.
            done = subprocess.run([*pip, *what], capture_output=True, text=True)
            if done.returncode != 0:
                sys.exit(f"{done.stdout}{done.stderr}pip install {' '.join(what)} failed (exit {done.returncode})")
        stamp.write_text(wanted)


# Programs the tests drive besides Python packages (Debian package -> program it provides): a headless
# browser for the query page, a SPARQL client not written in Python, Java for the HermiT reasoner, and strace
# to show that hostile queries make the server open no file and no connection (tests/test_hostile.py), nginx
# in front of several servers (tests/test_replicas.py), and Virtuoso, a production engine that `cmc-kg push`
# uploads to and `serve --store` serves over (tests/test_remote.py).
TEST_PROGRAMS = {"chromium": "chromium", "rasqal-utils": "roqet", "default-jre-headless": "java", "strace": "strace",
                 "nginx-light": "nginx", "virtuoso-opensource": "virtuoso-t"}


def setup_test_programs() -> None:
    missing = [package for package, program in TEST_PROGRAMS.items() if shutil.which(program) is None]
    if not missing:
        return
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        sys.exit(f"the tests need the Debian packages {', '.join(missing)}: install them (as root: "
                 f"apt-get install {' '.join(missing)}) and run again")
    print(f"installing {', '.join(missing)} with apt-get", file=sys.stderr)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, stdout=subprocess.DEVNULL, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True, stdout=subprocess.DEVNULL, env=env)


# pytest-xdist: two workers, each given whole files, so that a file's module-scoped servers start once; much of
# the suite waits on servers and builds in other processes. Files are taken in the order tests/conftest.py gives
# them: those that need no build first, while the build (once per run) is under way. Options given to `test` come
# after these and win (`-n 0`: one process).
PYTEST_WORKERS = ["-n", "2", "--dist", "loadfile", "--no-loadscope-reorder"]
ALONE_WORKERS = ["-n", "2", "--dist", "loadgroup"]  # the `alone` tests: one process per xdist_group
NO_TESTS_COLLECTED = 5  # pytest's exit code
SHARED_BUILD_VARIABLE = "CMC_TESTS_SHARED"  # read by tests/conftest.py; not CMC_KG_*, which the settings would refuse


LINTERS = (["ruff", "check", "."], ["mypy"])


def lint() -> int:
    """ruff, then mypy, as configured in pyproject.toml; the first that finds something ends the run."""
    for command in LINTERS:
        code = subprocess.run([str(BIN / command[0]), *command[1:]], cwd=ROOT).returncode
        if code != 0:
            return code
    return 0


def lint_beside(run: Callable[[], int]) -> int:
    """``run()`` with the linters running beside it (the tests leave a core idle much of the time); the linters'
    output is shown after it, and their failure fails the whole."""
    linters = [subprocess.Popen([str(BIN / command[0]), *command[1:]], cwd=ROOT, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True) for command in LINTERS]
    code = run()
    for linter in linters:
        print(linter.communicate()[0], end="")
    return next((linter.returncode for linter in linters if linter.returncode), code)


def run_forwarding_signals(command: list[str]) -> int:
    """Run the server as a child and pass SIGTERM, SIGINT and SIGHUP on to it, so that stopping this script
    stops the server instead of leaving it running."""
    import signal

    child = subprocess.Popen(command, cwd=ROOT)
    for number in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(number, lambda received, _frame: child.send_signal(received))
    while True:
        try:
            return child.wait()
        except InterruptedError:
            continue


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("serve", "test", "lint", "setup"):
        print(__doc__, file=sys.stderr)
        return 2
    setup()
    command, rest = argv[0], argv[1:]
    if command == "serve":
        build = subprocess.run([str(BIN / "cmc-kg"), "build"], cwd=ROOT)
        if build.returncode != 0 and not (ROOT / "build" / "cmc-kg.nq").exists():
            return build.returncode
        return run_forwarding_signals([str(BIN / "cmc-kg"), "serve", *rest])
    if command == "lint":
        return lint()
    if command == "test":
        setup_test_programs()
        pytest = [str(BIN / "python"), "-m", "pytest"]
        if any(arg in ("-m", "-n") or arg.startswith(("-m", "-n")) for arg in rest):
            return lint_beside(lambda: subprocess.run([*pytest, *PYTEST_WORKERS, *rest], cwd=ROOT).returncode)
        # The whole suite: the tests marked `alone` (fairness under load, shutdown of a busy server) run afterwards,
        # since the rest of the suite beside them made their load-bound checks fail on 2 cores; the costly-query ones
        # beside the held-connection ones, which cost little CPU (their xdist_group marks).
        # Both runs use one build of the graph, made in a folder of this run (tests/conftest.py: session_build).
        with tempfile.TemporaryDirectory(prefix="cmc-kg-tests-") as shared:
            env = {**os.environ, SHARED_BUILD_VARIABLE: shared}
            parallel = lint_beside(lambda: subprocess.run([*pytest, *PYTEST_WORKERS, "-m", "not alone", *rest],
                                                          cwd=ROOT, env=env).returncode)
            alone = subprocess.run([*pytest, *ALONE_WORKERS, "-m", "alone", *rest], cwd=ROOT, env=env).returncode
        # `-k` may select tests in one run only: the other's "no tests collected" fails nothing, unless both say it.
        if NO_TESTS_COLLECTED in (parallel, alone) and (parallel, alone) != (NO_TESTS_COLLECTED,) * 2:
            parallel, alone = (0 if code == NO_TESTS_COLLECTED else code for code in (parallel, alone))
        return parallel or alone
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
