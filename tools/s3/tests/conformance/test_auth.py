"""Authentication: SigV4 (header and presigned), SigV2, unknown keys, bad signatures,
anonymous requests, and the users file reloaded on SIGHUP."""

import http.client
import signal
import time
import urllib.parse
import urllib.error
import urllib.request

import botocore
import pytest

from conftest import ALICE, BOB, USERS, client_for, error_of, users_toml


def fetch(url, method="GET"):
    req = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read(), dict(e.headers)


def test_an_unknown_access_key_is_invalid_access_key_id(stack, bucket):
    stranger = dict(ALICE, access_key="AKUNKNOWN00000000000")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        client_for(stack, stranger).list_objects_v2(Bucket=bucket)
    assert error_of(e) == (403, "InvalidAccessKeyId")


def test_a_wrong_secret_is_signature_does_not_match(stack, bucket):
    wrong = dict(ALICE, secret_key="wrong-secret")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        client_for(stack, wrong).list_objects_v2(Bucket=bucket)
    assert error_of(e) == (403, "SignatureDoesNotMatch")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        client_for(stack, wrong).put_object(Bucket=bucket, Key="k", Body=b"x")
    assert error_of(e) == (403, "SignatureDoesNotMatch")


def test_anonymous_requests_to_a_private_bucket_are_access_denied(anon, s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"private")
    for call in (
        lambda: anon.get_object(Bucket=bucket, Key="k"),
        lambda: anon.list_objects_v2(Bucket=bucket),
        lambda: anon.put_object(Bucket=bucket, Key="k2", Body=b"x"),
    ):
        with pytest.raises(botocore.exceptions.ClientError) as e:
            call()
        assert error_of(e) == (403, "AccessDenied")


@pytest.fixture(scope="module")
def v4(stack):
    """Alice's client presigning with SigV4 (boto3 presigns S3 URLs with SigV2 by default)."""
    return client_for(stack, ALICE, signature_version="s3v4")


def put_bytes(url, data):
    """PUT with no Content-Type (a presigned SigV2 URL signs the empty one)."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    conn.request("PUT", parts.path + "?" + parts.query, body=data)
    r = conn.getresponse()
    return r.status, r.read()


def test_presigned_get_and_put(v4, bucket):
    s3 = v4
    s3.put_object(Bucket=bucket, Key="shared", Body=b"presigned body")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "shared"}, ExpiresIn=300)
    status, body, _ = fetch(url)
    assert (status, body) == (200, b"presigned body")
    assert "X-Amz-Signature=" in url
    put_url = s3.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "uploaded"}, ExpiresIn=300)
    assert put_bytes(put_url, b"via presigned put")[0] == 200
    assert s3.get_object(Bucket=bucket, Key="uploaded")["Body"].read() == b"via presigned put"


def test_sigv2_presigned_get_and_put(s3, bucket):
    s3.put_object(Bucket=bucket, Key="shared", Body=b"v2 presigned")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "shared"}, ExpiresIn=300)
    assert "Signature=" in url and "Expires=" in url
    assert fetch(url)[:2] == (200, b"v2 presigned")
    put_url = s3.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "v2up"}, ExpiresIn=300)
    assert put_bytes(put_url, b"v2 put")[0] == 200
    assert s3.get_object(Bucket=bucket, Key="v2up")["Body"].read() == b"v2 put"


def test_a_tampered_presigned_url_is_refused(v4, bucket):
    s3 = v4
    s3.put_object(Bucket=bucket, Key="shared", Body=b"x")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "shared"}, ExpiresIn=300)
    status, body, _ = fetch(url.replace("/shared?", "/other?"))
    assert status == 403
    assert b"SignatureDoesNotMatch" in body


def test_an_expired_presigned_url_is_access_denied(v4, bucket):
    s3 = v4
    s3.put_object(Bucket=bucket, Key="shared", Body=b"x")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "shared"}, ExpiresIn=1)
    time.sleep(2.5)
    status, body, _ = fetch(url)
    assert status == 403
    assert b"<Code>AccessDenied</Code>" in body


def test_a_presigned_url_may_live_at_most_seven_days(v4, bucket):
    s3 = v4
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "k"}, ExpiresIn=604800)
    status, body, _ = fetch(url)
    assert status == 404, body
    url = url.replace("X-Amz-Expires=604800", "X-Amz-Expires=604801")
    status, body, headers = fetch(url)
    assert status == 400
    assert b"<Code>AuthorizationQueryParametersError</Code>" in body
    assert headers.get("x-amz-request-id")


def test_sigv2_requests_are_accepted(stack, bucket, s3):
    v2 = client_for(stack, ALICE, signature_version="s3")
    v2.put_object(Bucket=bucket, Key="v2", Body=b"signed with v2")
    assert v2.get_object(Bucket=bucket, Key="v2")["Body"].read() == b"signed with v2"
    wrong = client_for(stack, dict(ALICE, secret_key="nope"), signature_version="s3")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        wrong.get_object(Bucket=bucket, Key="v2")
    assert error_of(e) == (403, "SignatureDoesNotMatch")


def test_users_are_reloaded_on_sighup(stack):
    carol = {
        "name": "carol",
        "access_key": "AKCAROL0000000000003",
        "secret_key": "carol-secret-000000000000000000000000003",
        "canonical_id": "c3" * 32,
    }
    client = client_for(stack, carol)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        client.list_buckets()
    assert error_of(e) == (403, "InvalidAccessKeyId")
    try:
        stack.users_file.write_text(users_toml(USERS + [carol]))
        stack.gateway.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.list_buckets()
                break
            except botocore.exceptions.ClientError:
                assert time.monotonic() < deadline, "carol was not loaded after SIGHUP"
                time.sleep(0.1)
        # A broken file keeps the users already loaded.
        stack.users_file.write_text("[[user]]\nname = 1\n")
        stack.gateway.send_signal(signal.SIGHUP)
        time.sleep(0.5)
        client.list_buckets()
        client_for(stack, BOB).list_buckets()
    finally:
        stack.users_file.write_text(users_toml(USERS))
        stack.gateway.send_signal(signal.SIGHUP)
        time.sleep(0.5)
    assert stack.gateway_alive()


def post_form(url, fields, file_bytes):
    """POSTs a multipart/form-data upload (the browser form S3's POST object takes)."""
    boundary = "----candybox-form-boundary"
    body = b""
    for k, v in fields.items():
        body += f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
    body += f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="f.txt"\r\nContent-Type: text/plain\r\n\r\n'.encode()
    body += file_bytes + f"\r\n--{boundary}--\r\n".encode()
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    conn.request("POST", parts.path, body=body, headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    r = conn.getresponse()
    return r.status, r.read()


def test_post_form_uploads_follow_their_policy(v4, bucket):
    s3 = v4
    post = s3.generate_presigned_post(
        Bucket=bucket,
        # S3 would also substitute ${filename}; s3s 0.14 does not (noted in the docs).
        Key="uploads/f.txt",
        Conditions=[["starts-with", "$key", "uploads/"], ["content-length-range", 1, 100]],
        ExpiresIn=300,
    )
    status, body = post_form(post["url"], post["fields"], b"posted by a form")
    assert status == 204, body
    assert s3.get_object(Bucket=bucket, Key="uploads/f.txt")["Body"].read() == b"posted by a form"
    # Too large for the policy's content-length-range: refused, nothing stored.
    status, body = post_form(post["url"], post["fields"], b"x" * 500)
    assert status in (400, 403), body
    # A key the policy does not allow: S3's 403 AccessDenied.
    fields = dict(post["fields"], key="elsewhere/f.txt")
    status, body = post_form(post["url"], fields, b"x")
    assert status == 403, body
    assert b"<Code>AccessDenied</Code>" in body
    listed = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert listed == ["uploads/f.txt"]
