"""A throwaway three-node RabbitMQ cluster on loopback, started from the installed rabbitmq-server.

Use it from a test module with
``from tests.integration.cluster import rabbit_cluster_fixture  # noqa: F401`` and a
``rabbit_cluster: RabbitCluster`` argument. The nodes never touch the machine's own node
(rabbit@localhost): they have their own names, ports, data dirs, config files and Erlang cookie, so
even a mistyped ``-n`` from this module cannot authenticate against rabbit@localhost.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import pytest

NODE_COUNT = 3
STARTUP_TIMEOUT_S = 150.0  # three Erlang VMs booting at once on two cores
STOP_TIMEOUT_S = 60.0
CTL_TIMEOUT_S = 60.0
#: the Debian package's real scripts; the /usr/sbin ones `su` to rabbitmq and `cd` to its home
DEBIAN_SCRIPTS = Path("/usr/lib/rabbitmq/bin")
#: ports the CLI tools (35672-35682) and the machine's node (5672, 25672) bind
RESERVED_PORTS = frozenset({5672, 25672, 4369, *range(35672, 35683)})


class ClusterError(RuntimeError):
    """The cluster could not be started, joined or stopped; the message carries the log tail."""


@dataclass
class Node:
    """One cluster member: its name, ports and files, and the server process while it runs."""

    name: str
    amqp_port: int
    dist_port: int
    base: Path
    process: subprocess.Popen[bytes] | None = None
    stdout: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.amqp_port}/"

    @property
    def log_file(self) -> Path:
        return self.base / "log" / f"{self.name}.log"

    def log_tail(self, lines: int = 40) -> str:
        parts = []
        for path in (self.base / "stdout.log", self.log_file):
            if path.exists():
                tail = path.read_text(errors="replace").splitlines()[-lines:]
                parts.append(f"--- {path} (last {len(tail)} lines)\n" + "\n".join(tail))
        return "\n".join(parts) or f"(no log files under {self.base})"

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


def free_ports(count: int) -> list[int]:
    """Ports the kernel hands out for port 0, held together so they differ, then released."""
    held: list[socket.socket] = []
    ports: list[int] = []
    try:
        while len(ports) < count:
            sock = socket.socket()
            held.append(sock)
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
            if port not in RESERVED_PORTS:
                ports.append(port)
    finally:
        for sock in held:
            sock.close()
    return ports


def amqp_answers(port: int, host: str = "127.0.0.1", timeout_s: float = 3.0) -> bool:
    """True when a broker on host:port answers the AMQP 0-9-1 header with a Connection.Start."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as sock:
            sock.sendall(b"AMQP\x00\x00\x09\x01")
            return sock.recv(7).startswith(b"\x01\x00\x00")  # method frame on channel 0
    except OSError:
        return False


def _pids_with(marker: str) -> list[int]:
    """Processes whose command line contains marker (read from /proc, no pgrep needed)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if marker.encode() in cmdline:
            pids.append(int(entry.name))
    return pids


class RabbitCluster:
    """Three rabbitmq-server processes joined into one cluster; see `start` and `close`."""

    def __init__(self, scripts: Path, root: Path, suffix: str, user: str | None) -> None:
        self.scripts = scripts
        self.root = root
        self.suffix = suffix
        self.user = user  # run nodes and CLI calls as this user (root -> "rabbitmq")
        ports = free_ports(2 * NODE_COUNT)
        self.nodes = [
            Node(
                f"dsp{i + 1}_{suffix}@localhost",
                ports[2 * i],
                ports[2 * i + 1],
                root / f"dsp{i + 1}",
            )
            for i in range(NODE_COUNT)
        ]
        self.startup_s = 0.0

    @property
    def urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    @property
    def node_names(self) -> list[str]:
        return [node.name for node in self.nodes]

    # -- environment -------------------------------------------------------------------------

    def _base_env(self) -> dict[str, str]:
        return {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "LC_ALL": "C.UTF-8",
            "HOME": str(self.root),  # its .erlang.cookie is shared by the nodes and the CLI calls
            # an empty file instead of /etc/rabbitmq/rabbitmq-env.conf (NODENAME=rabbit@localhost)
            "RABBITMQ_CONF_ENV_FILE": str(self.root / "rabbitmq-env.conf"),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
        }

    def node_env(self, node: Node) -> dict[str, str]:
        return {
            **self._base_env(),
            "RABBITMQ_NODENAME": node.name,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(node.amqp_port),
            "RABBITMQ_DIST_PORT": str(node.dist_port),
            "RABBITMQ_CONFIG_FILE": str(node.base / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(node.base / "advanced.config"),  # absent
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.root / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(node.base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(node.base / "log"),
            "RABBITMQ_PID_FILE": str(node.base / "rabbitmq.pid"),
            "ERL_FLAGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        }

    def _prepare_files(self) -> None:
        (self.root / "rabbitmq-env.conf").write_text("")
        (self.root / "enabled_plugins").write_text("[].\n")  # no management/prometheus listeners
        cookie = self.root / ".erlang.cookie"
        cookie.write_text(secrets.token_hex(20).upper())
        cookie.chmod(0o400)
        for node in self.nodes:
            for sub in ("mnesia", "log"):
                (node.base / sub).mkdir(parents=True)
            (node.base / "rabbitmq.conf").write_text(
                f"listeners.tcp.default = 127.0.0.1:{node.amqp_port}\nloopback_users.guest = true\n"
            )
        if self.user is not None and os.geteuid() == 0:
            entry = pwd.getpwnam(self.user)
            for path in [self.root, *self.root.rglob("*")]:
                os.chown(path, entry.pw_uid, entry.pw_gid)

    def _as_user(self) -> tuple[str | None, int | None, list[int] | None]:
        """user, group and extra_groups for subprocess: who the nodes and CLI calls run as."""
        if self.user is None:
            return None, None, None
        return self.user, pwd.getpwnam(self.user).pw_gid, []

    # -- CLI ---------------------------------------------------------------------------------

    def ctl(
        self,
        node: int | str,
        *args: str,
        tool: str = "rabbitmqctl",
        timeout_s: float = CTL_TIMEOUT_S,
    ) -> str:
        """Run a CLI tool against a node of this cluster; raise ClusterError when it fails."""
        name = self.nodes[node].name if isinstance(node, int) else node
        if name not in self.node_names:
            raise ValueError(f"{name} is not a node of this cluster")  # never rabbit@localhost
        command = [str(self.scripts / tool), "-n", name, *args]
        user, group, extra_groups = self._as_user()
        try:
            done = subprocess.run(
                command,
                env=self._base_env(),
                cwd=self.root,
                capture_output=True,
                text=True,
                timeout=timeout_s,
                check=False,
                user=user,
                group=group,
                extra_groups=extra_groups,
            )
        except subprocess.TimeoutExpired as exc:
            raise ClusterError(f"{' '.join(command[1:])}: no answer in {timeout_s}s") from exc
        if done.returncode != 0:
            raise ClusterError(
                f"{tool} {' '.join(command[1:])} exited {done.returncode}: "
                f"{(done.stderr or done.stdout).strip()[-2000:]}"
            )
        return done.stdout

    def running_nodes(self, via: int | None = None) -> list[str]:
        """`cluster_status` as seen from node `via` (default: the first node that answers)."""
        candidates = (
            [via] if via is not None else [i for i, n in enumerate(self.nodes) if n.alive()]
        )
        error: ClusterError | None = None
        for i in candidates:
            try:
                status = json.loads(self.ctl(i, "cluster_status", "--formatter", "json"))
            except ClusterError as exc:
                error = exc
                continue
            return sorted(status.get("running_nodes", []))
        raise error or ClusterError("no node of the cluster is running")

    def wait_running(self, count: int, timeout_s: float = STARTUP_TIMEOUT_S) -> list[str]:
        deadline = time.monotonic() + timeout_s
        running: list[str] = []
        while time.monotonic() < deadline:
            try:
                running = self.running_nodes()
            except ClusterError:
                running = []
            if len(running) == count:
                return running
            time.sleep(1)
        raise ClusterError(f"{count} running nodes expected after {timeout_s}s, saw {running}")

    def leader_of(self, queue: str, vhost: str = "/") -> str:
        """The node name that leads the quorum queue, asked of a running node."""
        for i, node in enumerate(self.nodes):
            if not node.alive():
                continue
            rows = json.loads(
                self.ctl(i, "list_queues", "-p", vhost, "name", "leader", "--formatter", "json")
            )
            for row in rows:
                if row.get("name") == queue and row.get("leader") in self.node_names:
                    return str(row["leader"])
            raise ClusterError(f"no leader known for queue {queue!r}: {rows}")
        raise ClusterError("no node of the cluster is running")

    # -- processes ---------------------------------------------------------------------------

    def _launch(self, node: Node) -> None:
        node.stdout = (node.base / "stdout.log").open("ab")
        user, group, extra_groups = self._as_user()
        # Foreground, not -detached: the Popen handle is the node's lifetime, so stopping and
        # cleaning up never depend on a PID file; its own session lets teardown kill the group.
        node.process = subprocess.Popen(
            [str(self.scripts / "rabbitmq-server")],
            env=self.node_env(node),
            cwd=node.base,
            stdin=subprocess.DEVNULL,
            stdout=node.stdout,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            user=user,
            group=group,
            extra_groups=extra_groups,
        )

    def _await_boot(self, node: Node, deadline: float) -> None:
        """Wait until the node answers AMQP and `await_startup`, or fail with its log tail."""
        while not amqp_answers(node.amqp_port, timeout_s=1):
            if not node.alive():
                code = node.process.returncode if node.process else None
                raise ClusterError(
                    f"{node.name} exited ({code}) while booting{self._context(node)}"
                )
            if time.monotonic() > deadline:
                raise ClusterError(f"{node.name} did not boot in time{self._context(node)}")
            time.sleep(0.5)
        left_s = max(5, int(deadline - time.monotonic()))
        try:
            self.ctl(node.name, "await_startup", "--timeout", str(left_s), timeout_s=left_s + 15)
        except ClusterError as exc:
            raise ClusterError(f"{exc}{self._context(node)}") from exc

    def _context(self, node: Node) -> str:
        return f"\n{describe(self.node_env(node))}\n{node.log_tail()}"

    def start(self) -> None:
        """Boot the three nodes in parallel, join 2 and 3 to 1, wait for 3 running nodes."""
        started = time.monotonic()
        self._prepare_files()
        deadline = started + STARTUP_TIMEOUT_S
        for node in self.nodes:
            self._launch(node)
        for node in self.nodes:
            self._await_boot(node, deadline)
        first = self.nodes[0].name
        for i in range(1, NODE_COUNT):
            self.ctl(i, "stop_app")
            self.ctl(i, "join_cluster", first)
            self.ctl(i, "start_app")
        self.wait_running(NODE_COUNT, timeout_s=max(5.0, deadline - time.monotonic()))
        self.startup_s = time.monotonic() - started

    def stop_node(
        self, i: int, *, app_only: bool = False, timeout_s: float = STOP_TIMEOUT_S
    ) -> None:
        """Stop node i: the whole Erlang VM (SIGTERM is a graceful stop), or only the rabbit app."""
        node = self.nodes[i]
        if app_only:
            self.ctl(i, "stop_app", timeout_s=timeout_s)
            return
        self._terminate([node], timeout_s)

    def start_node(self, i: int, timeout_s: float = STARTUP_TIMEOUT_S) -> None:
        """Start node i again (its app, or a new VM on the same data dir) and wait until it runs."""
        node = self.nodes[i]
        if node.alive():
            self.ctl(i, "start_app", timeout_s=timeout_s)
            return
        self._launch(node)
        self._await_boot(node, time.monotonic() + timeout_s)

    def _terminate(self, nodes: list[Node], timeout_s: float) -> None:
        for node in nodes:
            if node.alive() and node.process is not None:
                node.process.send_signal(signal.SIGTERM)  # the script's trap stops the VM cleanly
        deadline = time.monotonic() + timeout_s
        for node in nodes:
            if node.process is None:
                continue
            try:
                node.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                # the VM shares the (not yet reaped) script's process group: kill them together
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(node.process.pid, signal.SIGKILL)
                node.process.wait(timeout=10)
            node.process = None
            if node.stdout is not None:
                node.stdout.close()
                node.stdout = None

    def close(self) -> None:
        """Stop every node, remove the temp folder, fail if a process of this cluster remains."""
        try:
            self._terminate(self.nodes, STOP_TIMEOUT_S)
            deadline = time.monotonic() + 10
            while (strays := _pids_with(self.suffix)) and time.monotonic() < deadline:
                time.sleep(0.2)
            for pid in strays:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            if strays:
                raise ClusterError(f"processes of the cluster outlived teardown: {strays}")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def find_scripts() -> Path | None:
    """The directory of the real rabbitmq-server and rabbitmqctl scripts, None if not installed."""
    found = shutil.which("rabbitmq-server", path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
    if found is None:
        return None
    if (DEBIAN_SCRIPTS / "rabbitmq-server").exists():
        return DEBIAN_SCRIPTS
    return Path(os.path.realpath(found)).parent


def run_as() -> str | None:
    """Root runs the nodes as the rabbitmq user (as the packaged scripts would); others as self."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("rabbitmq")
    except KeyError:
        return None
    return "rabbitmq"


@pytest.fixture(scope="module", name="rabbit_cluster")
def rabbit_cluster_fixture() -> Iterator[RabbitCluster]:
    """A started three-node cluster shared by the tests of one module; torn down afterwards."""
    scripts = find_scripts()
    if scripts is None:
        pytest.skip("rabbitmq-server is not installed")
    suffix = secrets.token_hex(4)
    root = Path(tempfile.mkdtemp(prefix=f"dsp-cluster-{suffix}-"))
    cluster = RabbitCluster(scripts, root, suffix, run_as())
    try:
        try:
            cluster.start()
        except ClusterError as exc:
            pytest.fail(f"the RabbitMQ cluster did not start: {exc}", pytrace=False)
        yield cluster
    finally:
        cluster.close()  # also after a failed start: no node or temp folder outlives the module


def describe(env: Mapping[str, str]) -> str:
    """The RABBITMQ_/ERL_ variables of an environment, one per line (for reports and failures)."""
    return "\n".join(
        f"{k}={v}" for k, v in sorted(env.items()) if k.startswith(("RABBITMQ_", "ERL_"))
    )
