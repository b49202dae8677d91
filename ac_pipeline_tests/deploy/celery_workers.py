"""Machines for the Celery test, as processes on this one: Celery workers and Dagster runs, each with a home of
its own, sharing only what the environment names (Postgres, the sync state, the asset values, the broker).

Each process starts in a session of its own, so that a kill takes it with its children (a worker's pool
processes) the way a lost machine would, and every process is killed when the test ends, whatever happened.

RabbitMQ not reachable: the test is skipped, saying why, except on CI (`CI=true`), where it fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import pytest
from kombu import Connection

from ac_pipeline.defs.executor import BROKER_VAR, QUEUE_VAR

RABBITMQ = "amqp://guest:guest@127.0.0.1:5672//"
# The variables a machine does not inherit from the test: each is set per machine, or not at all.
PRIVATE_PREFIXES = ("AC_PIPELINE_", "ACTIVECAMPAIGN_", "DAGSTER_", "AWS_")


def rabbitmq_broker() -> str:
    """The broker URL, once a connection to it succeeded."""
    try:
        with Connection(RABBITMQ, connect_timeout=3) as connection:
            connection.ensure_connection(max_retries=1)
    except Exception as error:
        reason = f"RabbitMQ at {RABBITMQ} is not reachable: {error}"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}. CI requires it (see .ci/run).", pytrace=False)
        pytest.skip(reason)
    return RABBITMQ


def delete_queue(broker: str, queue: str) -> None:
    """A queue the broker keeps after its last worker left (RabbitMQ's are durable)."""
    with Connection(broker, connect_timeout=3) as connection:
        connection.default_channel.queue_delete(queue)


def wait_until(condition: Callable[[], object], what: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {seconds:g} s")
        time.sleep(0.05)


@dataclass
class Machine:
    name: str
    home: Path
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None
    _log: TextIO | None = field(default=None, repr=False)

    @property
    def log_path(self) -> Path:
        return self.home / f"{self.name}.log"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def start(self, *argv: str) -> None:
        self._log = self.log_path.open("w")
        self.process = subprocess.Popen(
            [sys.executable, *argv],
            cwd=self.home,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def kill(self) -> None:
        """SIGKILL to the process and its children, as when the machine is lost."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)
        if self._log is not None:
            self._log.close()

    def wait(self, seconds: float) -> int:
        assert self.process is not None, f"{self.name} never started"
        try:
            return self.process.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.name} did not end within {seconds:g} s; its log:\n{self.log()}") from None


@dataclass
class Cluster:
    """Celery workers and runs, each a Machine with a home under `root` holding its own copy of `files` and of
    the instance's dagster.yaml."""

    root: Path
    files: list[Path]
    dagster_yaml: Path
    shared_env: dict[str, str]
    machines: list[Machine] = field(default_factory=list)

    def machine(self, name: str, files: list[Path] | None = None) -> Machine:
        home = self.root / name
        (home / "dagster_home").mkdir(parents=True)
        shutil.copy(self.dagster_yaml, home / "dagster_home" / "dagster.yaml")
        for path in self.files if files is None else files:
            shutil.copy(path, home / path.name)
        env = {k: v for k, v in os.environ.items() if not k.startswith(PRIVATE_PREFIXES)}
        env.update(self.shared_env, AC_PIPELINE_HOME=str(home), DAGSTER_HOME=str(home / "dagster_home"))
        machine = Machine(name, home, env)
        self.machines.append(machine)
        return machine

    def worker(self, name: str) -> Machine:
        """A Celery worker running one step at a time, listening on this test's queue."""
        worker = self.machine(name)
        worker.start(
            *("-m", "celery", "-A", "ac_pipeline.defs.celery_app", "worker"),
            *("-Q", self.shared_env[QUEUE_VAR], "-n", f"{name}@%h", "--concurrency", "1"),
            *("--without-gossip", "--without-mingle", "--loglevel", "INFO"),
        )
        return worker

    def run(self, name: str, partition: str) -> Machine:
        """`dagster job execute` of audience_sync for one audience: the run's own process, which sends its
        steps to the workers. Its machine has the audiences (the partitions) but no customer 360."""
        run = self.machine(name, files=[path for path in self.files if path.suffix in (".yaml", ".yml")])
        tags = json.dumps({"dagster/partition": partition})
        run.start(
            "-m", "dagster", "job", "execute", "-m", "ac_pipeline.definitions", "-j", "audience_sync", "--tags", tags
        )
        return run

    def stop(self) -> None:
        for machine in reversed(self.machines):
            machine.kill()


@contextlib.contextmanager
def cluster_on_rabbitmq(root: Path, files: list[Path], dagster_yaml: Path, env: dict[str, str]) -> Iterator[Cluster]:
    """A Cluster on this machine's RabbitMQ with a queue of its own (CI and a developer share the broker): every
    process killed and the queue deleted when it ends."""
    broker = rabbitmq_broker()
    queue = f"ac_pipeline_test_{secrets.token_hex(6)}"
    cluster = Cluster(root, files, dagster_yaml, {**env, BROKER_VAR: broker, QUEUE_VAR: queue})
    try:
        yield cluster
    finally:
        cluster.stop()
        delete_queue(broker, queue)
