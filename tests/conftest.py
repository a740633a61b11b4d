"""Shared fixtures: small synthetic IDX datasets written by the tests themselves."""

from __future__ import annotations

import os
import pwd
import subprocess
import sys
import tarfile
from pathlib import Path
from subprocess import CompletedProcess
from subprocess import run as run_process
from typing import Any, Callable

import numpy as np
import pytest

from striate.data.idx import write_idx

REAL_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


def make_images(n: int, seed: int, classes: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Learnable 28x28 images: class c is a bright bar at a class-specific row, plus noise."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n).astype(np.uint8)
    images = rng.integers(0, 60, (n, 28, 28)).astype(np.uint8)
    for i, c in enumerate(labels):
        row = 3 + 2 * int(c)
        images[i, row:row + 2, 4:24] = 230
    return images, labels


def write_dataset(folder: Path, n_train: int = 320, n_test: int = 80, compress: bool = True, seed: int = 0) -> Path:
    """Write the four IDX files of a synthetic dataset into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    ext = ".gz" if compress else ""
    train_x, train_y = make_images(n_train, seed)
    test_x, test_y = make_images(n_test, seed + 1)
    write_idx(folder / f"train-images-idx3-ubyte{ext}", train_x)
    write_idx(folder / f"train-labels-idx1-ubyte{ext}", train_y)
    write_idx(folder / f"t10k-images-idx3-ubyte{ext}", test_x)
    write_idx(folder / f"t10k-labels-idx1-ubyte{ext}", test_y)
    return folder


@pytest.fixture
def synthetic_data(tmp_path: Path) -> Path:
    """A folder with a small gzipped synthetic IDX dataset."""
    return write_dataset(tmp_path / "synthetic")


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own dataset cache and default store, never the user's."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("STRIATE_CACHE", str(cache))
    monkeypatch.setenv("STRIATE_STORE", str(tmp_path / "default-store"))
    return cache


CLI_ENV = {"COLUMNS": "200"}  # wide enough that no line of output is wrapped


def train_killed_after_epoch_1(*args: str) -> None:
    """Run `striate train ARGS` (3 epochs or more, --no-progress) and SIGKILL it once epoch 1 is done."""
    import signal

    proc = subprocess.Popen([sys.executable, "-m", "striate", "train", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **CLI_ENV})
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("epoch   1/"):
            break
    proc.send_signal(signal.SIGKILL)  # somewhere in epoch 2
    proc.wait()


def run_cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 300,
            subprocess: bool = False) -> CompletedProcess[str]:
    """Run `striate ARGS` and return its exit code, stdout and stderr.

    In this process (Typer's CliRunner: no interpreter or torch start-up) unless ``subprocess=True``,
    which runs `python -m striate` in a child: for what needs a process of its own (signals, a PID,
    the environment torch reads once at start-up).
    """
    if subprocess:
        return run_cli_process(*args, cwd=cwd, env=env, timeout=timeout)
    return invoke_cli(*args, cwd=cwd, env=env)


def run_cli_process(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
                    timeout: float = 300) -> CompletedProcess[str]:
    """Run the real `striate` command in a subprocess."""
    full_env = {**os.environ, **CLI_ENV, **(env or {})}
    return run_process([sys.executable, "-m", "striate", *args], capture_output=True, text=True,
                       cwd=cwd, env=full_env, timeout=timeout)


def invoke_cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> CompletedProcess[str]:
    """Run `striate ARGS` in this process as `python -m striate` would: same app, same one-line errors,
    with the working directory, environment and argv set for the call and put back afterwards."""
    import traceback

    from typer.testing import CliRunner

    import striate.__main__
    from striate.cli.app import app

    before = (Path.cwd(), sys.argv)
    # argv as `python -m striate` sets it: runs record it, and `train` prints it as the way to call again.
    sys.argv = [striate.__main__.__file__, *args]
    try:
        if cwd is not None:
            os.chdir(cwd)
        result = CliRunner(env={**CLI_ENV, **(env or {})}).invoke(app, list(args), prog_name="python -m striate")
    finally:
        os.chdir(before[0])
        sys.argv = before[1]
    stderr = result.stderr
    if result.exception is not None and result.exc_info is not None and not isinstance(result.exception, SystemExit):
        # What the interpreter would print for an uncaught exception, so "no traceback" stays testable.
        stderr += "".join(traceback.format_exception(*result.exc_info))
    return CompletedProcess(["striate", *args], result.exit_code, result.stdout, stderr)


# STRIATE_TEST_POSTGRES_ADMIN lets a test point the fixture at a server that is not there.
POSTGRES_ADMIN = os.environ.get("STRIATE_TEST_POSTGRES_ADMIN", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


@pytest.fixture
def postgres_url(tmp_path, monkeypatch):
    """A fresh PostgreSQL database on the real server at 127.0.0.1:5432, dropped afterwards.

    Skips when no server answers, unless STRIATE_REQUIRE_POSTGRES=1 (set by .ci/run): then it fails."""
    import uuid

    import sqlalchemy as sa

    try:
        admin = sa.create_engine(POSTGRES_ADMIN, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            name = f"striate_test_{uuid.uuid4().hex[:10]}"
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as exc:
        if os.environ.get("STRIATE_REQUIRE_POSTGRES") == "1":  # CI: a missing server is a failure, not a skip
            pytest.fail(f"PostgreSQL is not running at {POSTGRES_ADMIN} ({exc.orig}) and STRIATE_REQUIRE_POSTGRES=1")
        pytest.skip(f"PostgreSQL is not running at {POSTGRES_ADMIN} ({exc.orig})")
    monkeypatch.setenv("STRIATE_ARTIFACTS", str(tmp_path / "remote-artifacts"))
    yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    admin.dispose()


def tar_member(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    """A tar entry of any kind and name, however unsafe (for archive-safety tests)."""
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    return info


def as_nobody(task: Callable[[], str]) -> str:
    """``task()`` in a forked child that runs as `nobody` (root may write anywhere); its result or error."""
    if os.geteuid() != 0:
        try:
            return task()
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}"
    nobody = pwd.getpwnam("nobody")
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child, which reports through the pipe
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)
            try:
                message = task()
            except BaseException as exc:
                message = f"{type(exc).__name__}: {exc}"
            os.write(write_end, message.encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        message = pipe.read().decode()
    os.waitpid(child, 0)
    return message


def free_port() -> int:
    """A TCP port nothing listens on at 127.0.0.1 now."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def get_json(url: str, token: str | None = None) -> tuple[int, Any]:
    """GET ``url`` (with a bearer token): the status and the decoded JSON body, also for error answers."""
    import json
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def wait_for_health(base: str, process: subprocess.Popen, output: Callable[[], str] | None = None,
                    timeout: float = 90) -> None:
    """Return once the striate server at ``base`` answers its health check; fail with ``output()`` (default:
    the process's stderr) when the process ends first, or after ``timeout`` seconds."""
    import time
    import urllib.error

    deadline = time.monotonic() + timeout
    while True:
        try:
            if get_json(f"{base}/api/v1/health")[0] == 200:
                return
        except (urllib.error.URLError, ConnectionError):
            pass
        if process.poll() is not None:
            said = output() if output is not None else process.communicate()[1]
            raise AssertionError(f"the server process ended: {said[-2000:]}")
        assert time.monotonic() < deadline, f"the server did not answer within {timeout:.0f} s"
        time.sleep(0.2)


def stop_process(process: subprocess.Popen) -> None:
    """SIGINT (a server's Ctrl-C), then SIGKILL if it has not ended within 20 s."""
    import signal

    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class TeamServer:
    """A real `striate server` process on 127.0.0.1 with an admin's token: over a SQLite store folder
    (``folder``) or another database (``db``, e.g. a postgresql:// URL)."""

    def __init__(self, folder: Path, db: str | None = None, args: tuple[str, ...] = (),
                 env: dict[str, str] | None = None) -> None:
        """``args``: more options for `striate server` (e.g. --artifacts URL); ``env``: more environment."""
        self.folder = folder
        self.db = db or str(folder)
        folder.mkdir(parents=True)
        self.env = {**os.environ, **CLI_ENV, **(env or {})}
        self.args = args
        for step in (["server", "upgrade"], ["server", "create-admin", "root"]):
            done = run_process([sys.executable, "-m", "striate", *step, "--db", self.db], env=self.env,
                               capture_output=True, text=True, timeout=120)
            assert done.returncode == 0, done.stderr
        self.token = done.stdout.strip().splitlines()[-1]
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = folder.parent / f"server-{self.port}.log"
        self.log = open(self.log_path, "a")  # noqa: SIM115 - closed in stop()
        self.start()

    def start(self) -> None:
        """Start the server process (again, after kill()) on the same port; return once it answers."""
        self.process = subprocess.Popen([sys.executable, "-m", "striate", "server", "--db", self.db, "--port",
                                         str(self.port), *self.args], env=self.env, stdout=self.log,
                                        stderr=subprocess.STDOUT)
        wait_for_health(self.url, self.process, self.log_path.read_text)

    def kill(self) -> None:
        """SIGKILL the server process: no shutdown of any kind."""
        self.process.kill()
        self.process.wait()

    def wipe(self) -> None:
        """Remove every run from the server's store (its users and tokens stay): a fresh store for the next test."""
        import sqlalchemy as sa

        from striate.tracking.store.schema import metadata

        engine = sa.create_engine(f"sqlite:///{self.folder / 'striate.db'}", connect_args={"timeout": 60})
        with engine.begin() as conn:
            for table in reversed(metadata.sorted_tables):
                if table.name != "store_meta":
                    conn.execute(table.delete())
        engine.dispose()

    def stop(self) -> None:
        stop_process(self.process)
        self.log.close()


@pytest.fixture(scope="session")
def team_server(tmp_path_factory: pytest.TempPathFactory):
    """One `striate server` for the whole test session (each test that uses it wipes its runs first)."""
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    server = TeamServer(tmp_path_factory.mktemp("team-server") / "store")
    yield server
    server.stop()


@pytest.fixture
def server_url(team_server: TeamServer, monkeypatch: pytest.MonkeyPatch) -> str:
    """The team server's URL, with its runs wiped and STRIATE_TOKEN set (child processes inherit it)."""
    team_server.wipe()
    monkeypatch.setenv("STRIATE_TOKEN", team_server.token)
    monkeypatch.setenv("STRIATE_SPOOL", str(Path(os.environ["STRIATE_CACHE"]).parent / "spool"))
    return team_server.url


S3_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                  "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory):
    """A real local S3 server for the session: moto's server mode (`moto_server`) on 127.0.0.1, a free port."""
    import shutil
    import time
    import urllib.error
    import urllib.request

    pytest.importorskip("s3fs")
    command = shutil.which("moto_server") or str(Path(sys.executable).parent / "moto_server")
    if not Path(command).is_file():
        pytest.skip("moto_server is not installed (pip install 'moto[server]')")
    port = free_port()
    log = open(tmp_path_factory.mktemp("moto") / "moto.log", "w")  # noqa: SIM115 - closed below
    process = subprocess.Popen([command, "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=subprocess.STDOUT,
                               env={**os.environ, **S3_CREDENTIALS})
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=5):
                break
        except (urllib.error.URLError, ConnectionError):
            assert process.poll() is None, Path(log.name).read_text()
            assert time.monotonic() < deadline, "moto_server did not answer within 60 s"
            time.sleep(0.2)
    yield endpoint
    process.terminate()
    process.wait(timeout=20)
    log.close()


def s3_environment(endpoint: str) -> dict[str, str]:
    """What points s3fs (in a server process or this one) at the local S3 server."""
    return {**S3_CREDENTIALS, "AWS_ENDPOINT_URL": endpoint, "FSSPEC_S3_ENDPOINT_URL": endpoint}


def s3_filesystem(endpoint: str):
    """An s3fs filesystem on the local S3 server (this process's own view of the bucket)."""
    import s3fs

    return s3fs.S3FileSystem(key="testing", secret="testing", endpoint_url=endpoint, use_listings_cache=False,
                             client_kwargs={"region_name": "us-east-1"})


@pytest.fixture(scope="session")
def s3_team_server(tmp_path_factory: pytest.TempPathFactory, s3_endpoint: str):
    """A second `striate server` for the session, keeping artifacts at s3://striate-test/team on the local S3
    server (the bucket is created here, before the server starts)."""
    pytest.importorskip("fastapi")
    import boto3  # moto's own dependency

    boto3.client("s3", endpoint_url=s3_endpoint, aws_access_key_id="testing", aws_secret_access_key="testing",
                 region_name="us-east-1").create_bucket(Bucket="striate-test")
    server = TeamServer(tmp_path_factory.mktemp("s3-team-server") / "store",
                        args=("--artifacts", "s3://striate-test/team"), env=s3_environment(s3_endpoint))
    yield server
    server.stop()
