"""Fixtures of the S3 conformance suite: a real node and a real gateway on loopback ports.

The suite starts one `candyboxd` (embedded coordination, its own temporary data directory) and
one `candybox-s3` in front of it for the whole session, each on ports the kernel picks (port 0;
the ready lines say which). The binaries come from `target/release` (or `CANDYBOX_BIN_DIR`):
build them with `cargo build --release --bin candyboxd --bin candybox-s3`.

Users (see USERS): alice and bob sign requests; `anon` sends unsigned ones.
"""

import base64
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import boto3
import botocore
import pytest
from botocore.config import Config

ROOT = Path(__file__).resolve().parents[4]
BIN_DIR = Path(os.environ.get("CANDYBOX_BIN_DIR", ROOT / "target" / "release"))

ALICE = {
    "name": "alice",
    "access_key": "AKALICE0000000000001",
    "secret_key": "alice-secret-0000000000000000000000000001",
    "canonical_id": "a1" * 32,
    "display_name": "alice",
    "email": "alice@example.com",
}
BOB = {
    "name": "bob",
    "access_key": "AKBOB000000000000002",
    "secret_key": "bob-secret-00000000000000000000000000002",
    "canonical_id": "b2" * 32,
    "display_name": "bob",
    "email": "bob@example.com",
}
USERS = [ALICE, BOB]

# The gateway's SSE-S3 / SSE-KMS keys (the key file is written with fresh random keys per run).
SSE_KEY_IDS = ["s3-default", "kms-default", "app-key"]


def users_toml(users):
    out = []
    for u in users:
        out.append("[[user]]")
        for k, v in u.items():
            out.append(f'{k} = "{v}"')
        out.append("")
    return "\n".join(out)


def binary(name):
    path = BIN_DIR / name
    if not path.exists():
        pytest.fail(
            f"{path} is missing: build it with `cargo build --release --bin candyboxd --bin candybox-s3` "
            "(or point CANDYBOX_BIN_DIR at the binaries)",
            pytrace=False,
        )
    return str(path)


def read_ready(proc, what, timeout_s=60):
    """Waits for a process's JSON ready line on stdout."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            if proc.poll() is not None:
                raise RuntimeError(f"{what} exited with {proc.returncode} before it was ready")
            continue
        try:
            ready = json.loads(line)
        except ValueError:
            continue
        if ready.get("ready"):
            return ready
    raise RuntimeError(f"{what} did not print its ready line in {timeout_s} s")


class Stack:
    """A node and a gateway in front of it."""

    def __init__(self, workdir):
        self.workdir = Path(workdir)
        self.users_file = self.workdir / "users.toml"
        self.users_file.write_text(users_toml(USERS))
        self.keys_file = self.workdir / "sse-keys.toml"
        keys = "\n".join(f'{k} = "{base64.b64encode(os.urandom(32)).decode()}"' for k in SSE_KEY_IDS)
        self.keys_file.write_text(
            f's3_key = "s3-default"\nkms_default_key = "kms-default"\n\n[keys]\n{keys}\n'
        )
        os.chmod(self.keys_file, 0o600)
        self.data_dir = self.workdir / "data"
        self.node_log = open(self.workdir / "node.log", "w")
        self.gateway_log = open(self.workdir / "gateway.log", "w")
        self.node = subprocess.Popen(
            [
                binary("candyboxd"),
                "--data-dir", str(self.workdir / "data"),
                "--listen", "127.0.0.1:0",
                "--http", "127.0.0.1:0",
                "--shards", "2",
            ],
            stdout=subprocess.PIPE, stderr=self.node_log, text=True,
        )
        self.node_ready = read_ready(self.node, "candyboxd")
        self.start_gateway()

    def start_gateway(self, *extra):
        self.gateway = subprocess.Popen(
            [
                binary("candybox-s3"),
                "--node", self.node_ready["listen"],
                "--listen", "127.0.0.1:0",
                "--http-listen", "127.0.0.1:0",
                "--users", str(self.users_file),
                # Lifecycle "days" of one second, applied every second: the lifecycle tests
                # run rules in seconds (buckets without rules are untouched).
                "--lifecycle-day-s", "1",
                "--lifecycle-interval-s", "1",
                # BUCKET.s3.test names a bucket (virtual-hosted style); tests send that Host
                # header to the loopback address themselves.
                "--domains", "s3.test",
                "--sse-keys-file", str(self.keys_file),
                *extra,
            ],
            stdout=subprocess.PIPE, stderr=self.gateway_log, text=True,
        )
        ready = read_ready(self.gateway, "candybox-s3")
        self.endpoint = "http://" + ready["listen"]
        self.http = "http://" + ready["http"]
        self.gateway_addr = ready["listen"]

    def stop(self):
        for proc in (self.gateway, self.node):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self.node_log.close()
        self.gateway_log.close()

    def gateway_alive(self):
        return self.gateway.poll() is None


@pytest.fixture(scope="session")
def stack():
    workdir = tempfile.mkdtemp(prefix="candybox-s3-suite-")
    s = Stack(workdir)
    try:
        yield s
    finally:
        s.stop()
        if s.gateway.returncode not in (0, None):
            print(Path(workdir, "gateway.log").read_text()[-4000:])
        shutil.rmtree(workdir, ignore_errors=True)


def client_for(stack, user=None, **config):
    kwargs = {}
    if user is None:
        kwargs["config"] = Config(
            signature_version=botocore.UNSIGNED, s3={"addressing_style": "path"}, retries={"max_attempts": 1}, **config
        )
        kwargs["aws_access_key_id"] = "unused"
        kwargs["aws_secret_access_key"] = "unused"
    else:
        kwargs["config"] = Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}, **config)
        kwargs["aws_access_key_id"] = user["access_key"]
        kwargs["aws_secret_access_key"] = user["secret_key"]
    return boto3.client("s3", endpoint_url=stack.endpoint, region_name="us-east-1", **kwargs)


@pytest.fixture(scope="session")
def s3(stack):
    return client_for(stack, ALICE)


@pytest.fixture(scope="session")
def s3_bob(stack):
    return client_for(stack, BOB)


@pytest.fixture(scope="session")
def anon(stack):
    return client_for(stack, None)


def unique_name(prefix="b"):
    return f"{prefix}-{uuid.uuid4().hex[:20]}"


def empty_and_delete(s3, name):
    try:
        while True:
            page = s3.list_objects_v2(Bucket=name)
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if not keys:
                break
            s3.delete_objects(Bucket=name, Delete={"Objects": keys, "Quiet": True})
        s3.delete_bucket(Bucket=name)
    except botocore.exceptions.ClientError:
        pass


@pytest.fixture
def bucket(s3):
    """A fresh bucket of alice's, emptied and deleted after the test."""
    name = unique_name()
    s3.create_bucket(Bucket=name)
    yield name
    empty_and_delete(s3, name)


def error_of(excinfo):
    """(HTTP status, S3 error code) of a botocore ClientError."""
    r = excinfo.value.response
    return r["ResponseMetadata"]["HTTPStatusCode"], r.get("Error", {}).get("Code")
