"""Buckets: naming, create / head / delete, ownership conflicts, listing, location."""

import botocore
import pytest

from conftest import empty_and_delete, error_of, unique_name


def test_create_head_and_delete(s3):
    name = unique_name()
    r = s3.create_bucket(Bucket=name)
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert r["Location"] == f"/{name}"
    assert s3.head_bucket(Bucket=name)["ResponseMetadata"]["HTTPStatusCode"] == 200
    s3.delete_bucket(Bucket=name)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.head_bucket(Bucket=name)
    assert error_of(e)[0] == 404


def test_creating_your_own_bucket_again_is_already_owned_by_you(s3, bucket):
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.create_bucket(Bucket=bucket)
    assert error_of(e) == (409, "BucketAlreadyOwnedByYou")


def test_creating_another_users_bucket_is_already_exists(s3_bob, bucket):
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3_bob.create_bucket(Bucket=bucket)
    assert error_of(e) == (409, "BucketAlreadyExists")


@pytest.mark.parametrize(
    "name",
    ["ab", "a" * 64, "UpperCase", "under_score", "-leading", "trailing-", "two..dots", "192.168.1.1", "dot-.hyphen", "xn--prefixed", "sthree-reserved"],
)
def test_invalid_names_are_refused(s3, name):
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.create_bucket(Bucket=name)
    assert error_of(e) == (400, "InvalidBucketName")


def test_a_name_with_dots_is_a_bucket_like_any_other(s3):
    name = unique_name("dotted") + ".example.com"
    s3.create_bucket(Bucket=name)
    try:
        s3.put_object(Bucket=name, Key="k", Body=b"dots")
        assert s3.get_object(Bucket=name, Key="k")["Body"].read() == b"dots"
        names = [b["Name"] for b in s3.list_buckets()["Buckets"]]
        assert name in names
    finally:
        empty_and_delete(s3, name)


def test_list_buckets_shows_only_the_callers_buckets(s3, s3_bob, bucket):
    mine = s3.list_buckets()
    assert bucket in [b["Name"] for b in mine["Buckets"]]
    assert mine["Owner"]["ID"] == "a1" * 32
    assert mine["Owner"]["DisplayName"] == "alice"
    theirs = s3_bob.list_buckets()
    assert bucket not in [b["Name"] for b in theirs["Buckets"]]
    for b in mine["Buckets"]:
        assert b["CreationDate"] is not None


def test_deleting_a_bucket_with_objects_is_bucket_not_empty(s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.delete_bucket(Bucket=bucket)
    assert error_of(e) == (409, "BucketNotEmpty")
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"x"


def test_missing_bucket_is_no_such_bucket(s3):
    name = unique_name()
    for call in (
        lambda: s3.delete_bucket(Bucket=name),
        lambda: s3.list_objects_v2(Bucket=name),
        lambda: s3.put_object(Bucket=name, Key="k", Body=b"x"),
        lambda: s3.get_object(Bucket=name, Key="k"),
    ):
        with pytest.raises(botocore.exceptions.ClientError) as e:
            call()
        assert error_of(e) == (404, "NoSuchBucket")


def test_location_of_a_us_east_1_bucket_is_empty(s3, bucket):
    assert s3.get_bucket_location(Bucket=bucket).get("LocationConstraint") is None


def test_a_location_constraint_for_another_region_is_refused(s3):
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.create_bucket(Bucket=unique_name(), CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    assert error_of(e) == (400, "InvalidLocationConstraint")


def test_another_users_bucket_is_access_denied(s3_bob, bucket):
    for call in (
        lambda: s3_bob.head_bucket(Bucket=bucket),
        lambda: s3_bob.list_objects_v2(Bucket=bucket),
        lambda: s3_bob.put_object(Bucket=bucket, Key="k", Body=b"x"),
        lambda: s3_bob.delete_bucket(Bucket=bucket),
    ):
        with pytest.raises(botocore.exceptions.ClientError) as e:
            call()
        assert error_of(e)[0] == 403


def vhost_request(stack, method, bucket, key, body=b""):
    """A signed virtual-hosted-style request (Host: BUCKET.s3.test:PORT), sent to loopback."""
    import hashlib
    import socket

    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    from conftest import ALICE

    port = stack.gateway_addr.rsplit(":", 1)[1]
    url = f"http://{bucket}.s3.test:{port}/{key}"
    req = AWSRequest(method=method, url=url, data=body, headers={"X-Amz-Content-SHA256": hashlib.sha256(body).hexdigest()})
    SigV4Auth(Credentials(ALICE["access_key"], ALICE["secret_key"]), "s3", "us-east-1").add_auth(req)
    headers = dict(req.headers.items())
    headers["Host"] = f"{bucket}.s3.test:{port}"
    headers["Content-Length"] = str(len(body))
    headers["Connection"] = "close"
    head = f"{method} /{key} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    s = socket.create_connection(("127.0.0.1", int(port)), timeout=10)
    try:
        s.sendall(head.encode() + body)
        reply = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            reply += chunk
        return reply
    finally:
        s.close()


def test_virtual_hosted_style_requests_name_the_bucket_in_the_host(stack, s3, bucket):
    reply = vhost_request(stack, "PUT", bucket, "vh/key", b"virtual")
    assert reply.startswith(b"HTTP/1.1 200"), reply[:300]
    assert s3.get_object(Bucket=bucket, Key="vh/key")["Body"].read() == b"virtual"
    reply = vhost_request(stack, "GET", bucket, "vh/key")
    assert reply.startswith(b"HTTP/1.1 200") and reply.endswith(b"virtual"), reply[:300]


def test_list_buckets_pages_and_filters_by_prefix(s3):
    stem = unique_name("pg")
    names = [f"{stem}-{i}" for i in range(5)]
    for n in names:
        s3.create_bucket(Bucket=n)
    try:
        seen = []
        token = None
        for _ in range(10):
            kwargs = {"MaxBuckets": 2, "Prefix": stem}
            if token:
                kwargs["ContinuationToken"] = token
            r = s3.list_buckets(**kwargs)
            seen += [b["Name"] for b in r["Buckets"]]
            token = r.get("ContinuationToken")
            if not token:
                break
        assert seen == names
        assert [b["Name"] for b in s3.list_buckets(Prefix=stem)["Buckets"]] == names
    finally:
        for n in names:
            s3.delete_bucket(Bucket=n)
