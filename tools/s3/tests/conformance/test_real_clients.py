"""Real S3 clients, scripted end to end against the node and gateway: the AWS CLI (mb, a 200 MiB
multipart cp, sync, ls, rm --recursive, presign fetched with curl), rclone (copy, sync, check)
and s3cmd (put, get, ls, del). Each must be installed (scripts/test.sh installs them); a missing
one fails with how to install it."""

import filecmp
import hashlib
import os
import shutil
import subprocess

import pytest

from conftest import ALICE, unique_name

MIB = 1024 * 1024


def need(tool, how):
    path = shutil.which(tool)
    if path is None:
        pytest.fail(f"`{tool}` is not installed: {how}", pytrace=False)
    return path


def run(cmd, env=None, timeout=600, cwd=None):
    r = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{cmd} exited {r.returncode}\nstdout: {r.stdout[-3000:]}\nstderr: {r.stderr[-3000:]}"
    return r.stdout


def sha256_of(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(MIB), b""):
            h.update(chunk)
    return h.hexdigest()


def write_random(path, size):
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, 4 * MIB)
            f.write(os.urandom(n))
            left -= n


@pytest.fixture
def aws_env(stack, tmp_path):
    env = dict(os.environ)
    env.update(
        AWS_ACCESS_KEY_ID=ALICE["access_key"],
        AWS_SECRET_ACCESS_KEY=ALICE["secret_key"],
        AWS_DEFAULT_REGION="us-east-1",
        AWS_CONFIG_FILE=str(tmp_path / "aws-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "aws-credentials"),
    )
    return env


def test_aws_cli(stack, aws_env, tmp_path):
    need("aws", "pip install awscli (scripts/test.sh does)")
    need("curl", "apt-get install curl")
    e = ["--endpoint-url", stack.endpoint]
    bucket = unique_name("awscli")
    run(["aws", *e, "s3", "mb", f"s3://{bucket}"], aws_env)
    assert bucket in run(["aws", *e, "s3", "ls"], aws_env)
    big = tmp_path / "big.bin"
    write_random(big, 200 * MIB)
    run(["aws", *e, "s3", "cp", str(big), f"s3://{bucket}/big.bin"], aws_env)
    head = run(["aws", *e, "s3api", "head-object", "--bucket", bucket, "--key", "big.bin"], aws_env)
    assert '"ContentLength": 209715200' in head
    assert '-' in head.split('"ETag"')[1].split("\n")[0], "a 200 MiB cp is a multipart upload"
    back = tmp_path / "back.bin"
    run(["aws", *e, "s3", "cp", f"s3://{bucket}/big.bin", str(back)], aws_env)
    assert sha256_of(back) == sha256_of(big)
    big.unlink()
    back.unlink()
    tree = tmp_path / "tree"
    for rel, size in [("a.txt", 10), ("sub/b.bin", 100_000), ("sub/deeper/c.bin", 3 * MIB), ("empty", 0)]:
        p = tree / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        write_random(p, size)
    run(["aws", *e, "s3", "sync", str(tree), f"s3://{bucket}/tree"], aws_env)
    listing = run(["aws", *e, "s3", "ls", "--recursive", f"s3://{bucket}/tree/"], aws_env)
    for rel in ("tree/a.txt", "tree/sub/b.bin", "tree/sub/deeper/c.bin", "tree/empty"):
        assert rel in listing, listing
    # A second sync has nothing to do.
    again = run(["aws", *e, "s3", "sync", str(tree), f"s3://{bucket}/tree"], aws_env)
    assert "upload:" not in again, again
    down = tmp_path / "down"
    run(["aws", *e, "s3", "sync", f"s3://{bucket}/tree", str(down)], aws_env)
    cmp = filecmp.dircmp(tree, down)
    assert not cmp.diff_files and not cmp.left_only and not cmp.right_only
    assert filecmp.cmp(tree / "sub/deeper/c.bin", down / "sub/deeper/c.bin", shallow=False)
    url = run(["aws", *e, "s3", "presign", f"s3://{bucket}/tree/a.txt", "--expires-in", "300"], aws_env).strip()
    fetched = tmp_path / "fetched"
    run(["curl", "-sSf", "-o", str(fetched), url])
    assert fetched.read_bytes() == (tree / "a.txt").read_bytes()
    run(["aws", *e, "s3", "rm", "--recursive", f"s3://{bucket}/"], aws_env)
    assert run(["aws", *e, "s3", "ls", "--recursive", f"s3://{bucket}/"], aws_env).strip() == ""
    run(["aws", *e, "s3", "rb", f"s3://{bucket}"], aws_env)
    assert bucket not in run(["aws", *e, "s3", "ls"], aws_env)


def test_aws_cli_with_server_side_encryption(stack, aws_env, tmp_path):
    need("aws", "pip install awscli (scripts/test.sh does)")
    e = ["--endpoint-url", stack.endpoint]
    bucket = unique_name("awssse")
    run(["aws", *e, "s3", "mb", f"s3://{bucket}"], aws_env)
    src = tmp_path / "src.bin"
    write_random(src, 20 * MIB + 5)
    key = tmp_path / "customer.key"
    key.write_bytes(os.urandom(32))
    other = tmp_path / "other.key"
    other.write_bytes(os.urandom(32))
    sse_c = ["--sse-c", "AES256", "--sse-c-key", f"fileb://{key}"]
    # A 20 MiB cp is a multipart upload; every part carries the customer key.
    run(["aws", *e, "s3", "cp", str(src), f"s3://{bucket}/c.bin", *sse_c], aws_env)
    back = tmp_path / "back.bin"
    run(["aws", *e, "s3", "cp", f"s3://{bucket}/c.bin", str(back), *sse_c], aws_env)
    assert sha256_of(back) == sha256_of(src)
    refused = subprocess.run(["aws", *e, "s3", "cp", f"s3://{bucket}/c.bin", str(tmp_path / "no.bin")],
                             env=aws_env, capture_output=True, text=True, timeout=120)
    assert refused.returncode != 0 and "400" in refused.stderr, refused.stderr
    # Rotate the customer key in place (a copy within the bucket: the bytes stay).
    run(["aws", *e, "s3", "cp", f"s3://{bucket}/c.bin", f"s3://{bucket}/c.bin",
         "--sse-c-copy-source", "AES256", "--sse-c-copy-source-key", f"fileb://{key}",
         "--sse-c", "AES256", "--sse-c-key", f"fileb://{other}"], aws_env)
    run(["aws", *e, "s3", "cp", f"s3://{bucket}/c.bin", str(back), "--sse-c", "AES256",
         "--sse-c-key", f"fileb://{other}"], aws_env)
    assert sha256_of(back) == sha256_of(src)
    # SSE-KMS with a named key of the gateway's key file.
    run(["aws", *e, "s3", "cp", str(src), f"s3://{bucket}/k.bin", "--sse", "aws:kms",
         "--sse-kms-key-id", "app-key"], aws_env)
    head = run(["aws", *e, "s3api", "head-object", "--bucket", bucket, "--key", "k.bin"], aws_env)
    assert '"ServerSideEncryption": "aws:kms"' in head and '"SSEKMSKeyId": "app-key"' in head, head
    run(["aws", *e, "s3", "cp", f"s3://{bucket}/k.bin", str(back)], aws_env)
    assert sha256_of(back) == sha256_of(src)
    run(["aws", *e, "s3", "rb", "--force", f"s3://{bucket}"], aws_env)


def test_rclone(stack, tmp_path):
    need("rclone", "apt-get install rclone (scripts/test.sh does)")
    # rclone's AWS SDK refuses a custom CA bundle on its own HTTP transport; this is loopback
    # plain HTTP, so no bundle is needed.
    env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
    env.update(
        RCLONE_CONFIG=str(tmp_path / "rclone.conf"),
        RCLONE_CONFIG_CB_TYPE="s3",
        RCLONE_CONFIG_CB_PROVIDER="Other",
        RCLONE_CONFIG_CB_ACCESS_KEY_ID=ALICE["access_key"],
        RCLONE_CONFIG_CB_SECRET_ACCESS_KEY=ALICE["secret_key"],
        RCLONE_CONFIG_CB_ENDPOINT=stack.endpoint,
        RCLONE_CONFIG_CB_REGION="us-east-1",
        RCLONE_CONFIG_CB_FORCE_PATH_STYLE="true",
    )
    (tmp_path / "rclone.conf").write_text("")
    bucket = unique_name("rclone")
    src = tmp_path / "src"
    for rel, size in [("one.bin", 1000), ("dir/two.bin", 7 * MIB), ("dir/three.txt", 5), ("x/y/z", 0)]:
        p = src / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        write_random(p, size)
    flags = ["--s3-upload-cutoff", "5M", "--s3-chunk-size", "5M", "--retries", "1", "--low-level-retries", "1"]
    run(["rclone", "mkdir", f"cb:{bucket}"], env)
    run(["rclone", "copy", *flags, str(src), f"cb:{bucket}/data"], env)
    run(["rclone", "check", str(src), f"cb:{bucket}/data"], env)
    (src / "one.bin").unlink()
    write_random(src / "new.bin", 2000)
    run(["rclone", "sync", *flags, str(src), f"cb:{bucket}/data"], env)
    run(["rclone", "check", str(src), f"cb:{bucket}/data"], env)
    listed = run(["rclone", "lsf", "-R", f"cb:{bucket}/data"], env)
    assert "one.bin" not in listed and "new.bin" in listed, listed
    back = tmp_path / "back"
    run(["rclone", "copy", f"cb:{bucket}/data", str(back)], env)
    cmp = filecmp.dircmp(src, back)
    assert not cmp.diff_files and not cmp.left_only and not cmp.right_only
    run(["rclone", "purge", f"cb:{bucket}"], env)


def test_s3cmd(stack, tmp_path):
    need("s3cmd", "apt-get install s3cmd (scripts/test.sh does)")
    host = stack.gateway_addr
    cfg = tmp_path / "s3cfg"
    cfg.write_text(
        "[default]\n"
        f"access_key = {ALICE['access_key']}\n"
        f"secret_key = {ALICE['secret_key']}\n"
        f"host_base = {host}\n"
        f"host_bucket = {host}\n"
        "use_https = False\n"
        "bucket_location = us-east-1\n"
        "signature_v2 = False\n"
        "multipart_chunk_size_mb = 5\n"
    )
    s3cmd = ["s3cmd", "-c", str(cfg), "--no-progress"]
    bucket = unique_name("s3cmd")
    run([*s3cmd, "mb", f"s3://{bucket}"])
    small = tmp_path / "small.txt"
    small.write_bytes(b"hello from s3cmd\n")
    big = tmp_path / "big.bin"
    write_random(big, 12 * MIB)
    run([*s3cmd, "put", str(small), f"s3://{bucket}/small.txt"])
    run([*s3cmd, "put", str(big), f"s3://{bucket}/dir/big.bin"])
    listing = run([*s3cmd, "ls", "--recursive", f"s3://{bucket}"])
    assert f"s3://{bucket}/small.txt" in listing and f"s3://{bucket}/dir/big.bin" in listing, listing
    top = run([*s3cmd, "ls", f"s3://{bucket}"])
    assert "DIR" in top and f"s3://{bucket}/dir/" in top, top
    out = tmp_path / "out.bin"
    run([*s3cmd, "get", f"s3://{bucket}/dir/big.bin", str(out)])
    assert sha256_of(out) == sha256_of(big)
    run([*s3cmd, "get", f"s3://{bucket}/small.txt", str(tmp_path / "small.back")])
    assert (tmp_path / "small.back").read_bytes() == small.read_bytes()
    run([*s3cmd, "del", f"s3://{bucket}/small.txt", f"s3://{bucket}/dir/big.bin"])
    assert run([*s3cmd, "ls", "--recursive", f"s3://{bucket}"]).strip() == ""
    run([*s3cmd, "rb", f"s3://{bucket}"])
