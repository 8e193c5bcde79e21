"""Many processes training one model, through JAX's multi-controller runtime.

    netc train FILE --distributed                       # Slurm, Open MPI, Cloud TPU, k8s:
                                                        # jax.distributed detects them
    netc train FILE --coordinator HOST:PORT --num-processes N --process-id I

Every process runs the same command. JAX connects them (`jax.distributed.initialize`), the
mesh spans every process's devices, and XLA's collectives (gloo on CPU, NCCL on GPU) sum
the gradients; each process holds the data (or streams it) and the same seeded shuffle,
puts only its rows of every minibatch on its devices (runtime/host_feed.py), and each
device computes its rows. Process 0 alone writes the run folder and prints.

A dead or missing peer must not hang a process, nor kill it without a word (JAX ends a
process from inside XLA when a peer stops sending heartbeats). So `netc train` runs the
training in a child process and stays as its supervisor:
  - before the child starts, the supervisors meet (process 0 listens on the coordinator's
    port + 1): one that does not come within the timeout is named, and all stop;
  - when the child dies, the supervisor reads what JAX printed and names the processes
    that stopped answering.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass

CHILD = "NETC_DISTRIBUTED_CHILD"  # set in the child's environment: it trains
TIMEOUT_S = 60.0


class ClusterError(Exception):
    """A process that did not join or stopped answering (a one-line message)."""


@dataclass(frozen=True)
class Cluster:
    coordinator: str | None = None  # HOST:PORT, None: let jax.distributed detect it
    num_processes: int | None = None
    process_id: int | None = None
    timeout_s: float = TIMEOUT_S

    @property
    def explicit(self) -> bool:
        return self.coordinator is not None

    def initialize(self) -> None:
        """jax.distributed.initialize, in the child, before JAX touches a device."""
        import jax

        timeout = max(int(self.timeout_s), 1)
        jax.distributed.initialize(self.coordinator, self.num_processes, self.process_id,
                                   initialization_timeout=timeout,
                                   heartbeat_timeout_seconds=timeout)


def meet(cluster: Cluster) -> None:
    """The supervisors' rendezvous before JAX starts: process 0 waits for every other
    process's hello on the coordinator's port + 1 and answers all once they are in.
    Raises ClusterError naming the processes that did not come."""
    host, port = cluster.coordinator.rsplit(":", 1)
    port = int(port) + 1
    n, me = cluster.num_processes, cluster.process_id
    deadline = time.monotonic() + cluster.timeout_s
    if me == 0:
        joined: dict[int, socket.socket] = {}
        with socket.create_server(("", port), reuse_port=False) as server:
            server.settimeout(0.2)
            while len(joined) < n - 1 and time.monotonic() < deadline:
                try:
                    conn, _ = server.accept()
                except TimeoutError:
                    continue
                conn.settimeout(5)
                try:
                    joined[int(conn.recv(16).decode().strip())] = conn
                except (OSError, ValueError):
                    conn.close()
            missing = sorted(set(range(1, n)) - set(joined))
            for conn in joined.values():
                with conn:
                    conn.sendall(b"go\n" if not missing else b"stop\n")
        if missing:
            raise ClusterError(f"{_processes(missing)} did not join within "
                               f"{cluster.timeout_s:g} s (--num-processes {n}, coordinator "
                               f"{cluster.coordinator})")
        return
    while True:
        try:
            with socket.create_connection((host, port), timeout=1) as conn:
                conn.sendall(f"{me}\n".encode())
                conn.settimeout(max(deadline - time.monotonic(), 1) + 5)
                answer = conn.recv(8).decode().strip()
            break
        except OSError:
            if time.monotonic() > deadline:
                raise ClusterError(f"process 0 (the coordinator, {cluster.coordinator}) did "
                                   f"not answer within {cluster.timeout_s:g} s") from None
            time.sleep(0.2)
    if answer != "go":
        raise ClusterError("another process did not join in time; process 0 names it")


def _processes(ids) -> str:
    ids = list(ids)
    return (f"process {ids[0]}" if len(ids) == 1
            else "processes " + ", ".join(map(str, ids)))


def supervise(argv: list[str], cluster: Cluster) -> int:
    """Run `netc ARGV` as the training child and wait; on its failure name the processes
    JAX reported dead. -> the exit status for this command."""
    if cluster.explicit:
        meet(cluster)
    env = {**os.environ, CHILD: "1"}
    child = subprocess.Popen([sys.executable, "-m", "netc", *argv], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             bufsize=1)
    tail: deque[str] = deque(maxlen=400)
    forward = threading.Thread(target=_forward, args=(child.stdout, sys.stdout, None),
                               daemon=True)
    forward.start()
    try:
        _forward(child.stderr, sys.stderr, tail)
        code = child.wait()
        forward.join()
    except KeyboardInterrupt:
        child.wait()
        return 130
    if code == 0 or code == 130:
        return code
    dead = dead_processes("".join(tail))
    if dead:
        me = f"process {cluster.process_id}" if cluster.process_id is not None else "this one"
        raise ClusterError(f"{_processes(dead)} stopped answering (no heartbeat within "
                           f"{cluster.timeout_s:g} s); {me} stopped too. Its run folder "
                           "keeps the last checkpoint: run the same command with --resume")
    if code < 0 or code in (134, 139):
        raise ClusterError(f"the training process ended abnormally (status {code})")
    return code


def _forward(source, target, tail: deque | None) -> None:
    """Copy the child's lines to ours, leaving out JAX's and gloo's internals (kept in
    `tail` for reading who died): from JAX's first error log on, nothing more (the process
    is going down, and its lines continue that log)."""
    failing = False
    for line in source:
        if tail is not None:
            tail.append(line)
        failing = failing or re.match(r"[EF]\d{4} \d\d:\d\d", line) is not None
        if not failing and not _jax_internals(line):
            target.write(line)
            target.flush()


_DEAD = (re.compile(r"Task (\d+) heartbeat timeout"),
         re.compile(r"stopped sending heartbeats\):\s*\n?([\d ,\n]+)"))


def dead_processes(text: str) -> list[int]:
    """The process ids JAX's coordination service reported dead in `text`."""
    found: set[int] = set()
    for pattern in _DEAD:
        for match in pattern.finditer(text):
            found.update(int(x) for x in re.findall(r"\d+", match.group(1)))
    return sorted(found)


def _jax_internals(line: str) -> bool:
    """The lines of a C++ check failure, a coordination-service log or gloo's connection
    messages (which its threads interleave, leaving fragments such as a bare rank number),
    not for users."""
    return (line.startswith(("    @ ", "*** Check failure", "[Gloo]"))
            or "peer ranks" in line or line.strip().isdigit()
            or re.match(r"[EFW]\d{4} \d\d:\d\d", line) is not None)
