"""A real Ray cluster of several nodes on this one machine, for the tests and benchmarks/cluster.py.

Every process of it runs in a network namespace of its own that has only the loopback
interface (`unshare -n`, which needs root): Ray replaces 127.0.0.1 by the machine's own network
address (ray-project/ray#59110), which there falls back to 127.0.0.1, so no traffic leaves the
machine, and no port can clash with another cluster. Stopping it stops exactly the processes in
that namespace: those this cluster started.
"""
import fcntl
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HEAD_PORT = 6379
_SIOCGIFFLAGS, _SIOCSIFFLAGS, _IFF_UP = 0x8913, 0x8914, 0x1


def unavailable():
    """Why no such cluster can start here (None if it can)."""
    if os.geteuid() != 0:
        return "needs root, for a network namespace of its own (unshare -n)"
    for tool in ("unshare", "nsenter"):
        if shutil.which(tool) is None:
            return f"needs {tool} (util-linux)"
    try:
        import ray  # noqa: F401
    except ImportError:
        return "needs Ray: pip install -e '.[ray]'"
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"cannot make a network namespace here: {probe.stderr.strip()}"
    return None


def loopback_up():
    """Bring `lo` up in this process's network namespace (new namespaces start with it down)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH14s", b"lo", 0, b"")
        flags = struct.unpack("16sH14s", fcntl.ioctl(sock, _SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(sock, _SIOCSIFFLAGS, struct.pack("16sH14s", b"lo", flags | _IFF_UP, b""))


class LoopbackCluster:
    """`nodes` Ray nodes (the first the head) of `cpus` CPUs and `object_store_bytes` each,
    no dashboard; a context manager that stops them all on exit."""

    def __init__(self, nodes=2, cpus=1, object_store_bytes=100 << 20, env=None):
        self.nodes, self.cpus = nodes, cpus
        self.object_store_bytes = object_store_bytes
        self.env = dict(os.environ if env is None else env, RAY_USAGE_STATS_ENABLED="0")
        self.address = f"127.0.0.1:{HEAD_PORT}"
        self.holder = None

    def __enter__(self):
        # Ray's sockets live under its temp dir, and a socket's path must fit in 107 bytes.
        self.root = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))
        # A process that only holds the namespace open; everything else joins it.
        self.holder = subprocess.Popen(["unshare", "-n", "sleep", "infinity"])
        ours = os.readlink("/proc/self/ns/net")
        while self._namespace_of(self.holder.pid) in (None, ours):
            time.sleep(0.01)
        self.namespace = self._namespace_of(self.holder.pid)
        try:
            self.run([sys.executable, "-c",
                      "from keras_bottleneck.testing.loopback_cluster import loopback_up; loopback_up()"])
            for node in range(self.nodes):
                self.start_node(head=node == 0)
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc):
        self.stop()

    def start_node(self, head=False):
        where = ["--head", f"--port={HEAD_PORT}", "--include-dashboard=false",
                 f"--temp-dir={self.root}"] if head else [f"--address={self.address}"]
        self.run([str(Path(sys.executable).with_name("ray")), "start", *where,
                  f"--num-cpus={self.cpus}", "--num-gpus=0",
                  f"--object-store-memory={self.object_store_bytes}", "--disable-usage-stats"])

    def command(self, args):
        """`args` as a command run inside the cluster's network namespace."""
        return ["nsenter", "-t", str(self.holder.pid), "-n", "--", *map(str, args)]

    def run(self, args):
        result = subprocess.run(self.command(args), env=self.env, capture_output=True,
                                text=True, timeout=300)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(map(str, args))} exited {result.returncode}:\n"
                               f"{result.stdout[-2000:]}{result.stderr[-3000:]}")
        return result

    @staticmethod
    def _namespace_of(pid):
        try:
            return os.readlink(f"/proc/{pid}/ns/net")
        except OSError:  # gone, or not started yet
            return None

    def processes(self):
        """{pid: command line} of every process in the namespace but its holder (after stop():
        none)."""
        found = {}
        holder = self.holder.pid if self.holder else None
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and int(entry.name) != holder \
                    and self._namespace_of(entry.name) == self.namespace:
                try:
                    found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(
                        b"\0", b" ").decode(errors="replace").strip()
                except OSError:
                    pass
        return found

    def stop(self, grace_seconds=10):
        """SIGTERM, then SIGKILL, every process in the namespace, and the namespace."""
        if self.holder is None:
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            deadline = time.monotonic() + grace_seconds
            while (pids := self.processes()) and time.monotonic() < deadline:
                for pid in pids:
                    try:
                        os.kill(pid, sig)
                    except ProcessLookupError:
                        pass
                time.sleep(0.2)
        self.holder.kill()
        self.holder.wait()
        self.holder = None
        shutil.rmtree(self.root, ignore_errors=True)
