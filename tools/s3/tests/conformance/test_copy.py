"""CopyObject (zero-copy within a bucket, streamed across buckets, COPY / REPLACE metadata,
copy-source conditions) and UploadPartCopy with ranges."""

import datetime
import hashlib
import os

import botocore
import pytest

from conftest import empty_and_delete, error_of, unique_name


@pytest.fixture
def other_bucket(s3):
    name = unique_name("other")
    s3.create_bucket(Bucket=name)
    yield name
    empty_and_delete(s3, name)


def test_copy_within_a_bucket_keeps_bytes_and_metadata(s3, bucket):
    body = os.urandom(70_000)
    put = s3.put_object(Bucket=bucket, Key="src", Body=body, ContentType="image/png", Metadata={"a": "1"}, CacheControl="no-cache")
    r = s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "src"})
    assert r["CopyObjectResult"]["ETag"] == put["ETag"]
    assert r["CopyObjectResult"]["LastModified"] is not None
    got = s3.get_object(Bucket=bucket, Key="dst")
    assert got["Body"].read() == body
    assert got["ContentType"] == "image/png"
    assert got["Metadata"] == {"a": "1"}
    assert got["CacheControl"] == "no-cache"
    assert got["ETag"] == put["ETag"]


def test_copy_with_replace_takes_the_new_metadata(s3, bucket):
    put = s3.put_object(Bucket=bucket, Key="src", Body=b"bytes", ContentType="text/plain", Metadata={"a": "1"})
    s3.copy_object(
        Bucket=bucket,
        Key="dst",
        CopySource={"Bucket": bucket, "Key": "src"},
        MetadataDirective="REPLACE",
        ContentType="application/json",
        Metadata={"b": "2"},
    )
    got = s3.get_object(Bucket=bucket, Key="dst")
    assert got["Body"].read() == b"bytes"
    assert got["ContentType"] == "application/json"
    assert got["Metadata"] == {"b": "2"}
    assert got["ETag"] == put["ETag"]


def test_copying_an_object_onto_itself_needs_replace(s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"x", Metadata={"a": "1"})
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.copy_object(Bucket=bucket, Key="k", CopySource={"Bucket": bucket, "Key": "k"})
    assert error_of(e) == (400, "InvalidRequest")
    s3.copy_object(Bucket=bucket, Key="k", CopySource={"Bucket": bucket, "Key": "k"}, MetadataDirective="REPLACE", Metadata={"a": "2"})
    assert s3.head_object(Bucket=bucket, Key="k")["Metadata"] == {"a": "2"}


def test_copy_across_buckets_streams_the_bytes(s3, bucket, other_bucket):
    body = os.urandom(6 * 1024 * 1024 + 3)
    s3.put_object(Bucket=bucket, Key="src", Body=body, Metadata={"a": "1"}, ContentType="x/y")
    r = s3.copy_object(Bucket=other_bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "src"})
    assert r["CopyObjectResult"]["ETag"] == f'"{hashlib.md5(body).hexdigest()}"'
    got = s3.get_object(Bucket=other_bucket, Key="dst")
    assert hashlib.sha256(got["Body"].read()).digest() == hashlib.sha256(body).digest()
    assert got["Metadata"] == {"a": "1"}
    assert got["ContentType"] == "x/y"


def test_copy_source_conditions(s3, bucket):
    put = s3.put_object(Bucket=bucket, Key="src", Body=b"x")
    past = datetime.datetime(2000, 1, 1, tzinfo=datetime.timezone.utc)
    future = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=1)
    src = {"Bucket": bucket, "Key": "src"}
    s3.copy_object(Bucket=bucket, Key="d1", CopySource=src, CopySourceIfMatch=put["ETag"])
    for kwargs in (
        {"CopySourceIfMatch": '"nope"'},
        {"CopySourceIfNoneMatch": put["ETag"]},
        {"CopySourceIfModifiedSince": future},
        {"CopySourceIfUnmodifiedSince": past},
    ):
        with pytest.raises(botocore.exceptions.ClientError) as e:
            s3.copy_object(Bucket=bucket, Key="d2", CopySource=src, **kwargs)
        assert error_of(e) == (412, "PreconditionFailed"), kwargs
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.head_object(Bucket=bucket, Key="d2")
    assert error_of(e)[0] == 404


def test_copy_of_a_missing_source_is_no_such_key(s3, bucket):
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.copy_object(Bucket=bucket, Key="d", CopySource={"Bucket": bucket, "Key": "absent"})
    assert error_of(e) == (404, "NoSuchKey")


def test_copy_from_another_users_bucket_is_access_denied(s3, s3_bob, bucket):
    s3.put_object(Bucket=bucket, Key="secret", Body=b"x")
    theirs = unique_name("bob")
    s3_bob.create_bucket(Bucket=theirs)
    try:
        with pytest.raises(botocore.exceptions.ClientError) as e:
            s3_bob.copy_object(Bucket=theirs, Key="stolen", CopySource={"Bucket": bucket, "Key": "secret"})
        assert error_of(e)[0] == 403
    finally:
        empty_and_delete(s3_bob, theirs)


def test_upload_part_copy_with_ranges(s3, bucket, other_bucket):
    body = os.urandom(11 * 1024 * 1024)
    s3.put_object(Bucket=bucket, Key="src", Body=body)
    uid = s3.create_multipart_upload(Bucket=other_bucket, Key="assembled")["UploadId"]
    cut = 5 * 1024 * 1024
    parts = []
    for n, (first, last) in enumerate([(0, cut - 1), (cut, len(body) - 1)], start=1):
        r = s3.upload_part_copy(
            Bucket=other_bucket,
            Key="assembled",
            UploadId=uid,
            PartNumber=n,
            CopySource={"Bucket": bucket, "Key": "src"},
            CopySourceRange=f"bytes={first}-{last}",
        )
        assert r["CopyPartResult"]["ETag"] == f'"{hashlib.md5(body[first:last + 1]).hexdigest()}"'
        parts.append({"PartNumber": n, "ETag": r["CopyPartResult"]["ETag"]})
    s3.complete_multipart_upload(Bucket=other_bucket, Key="assembled", UploadId=uid, MultipartUpload={"Parts": parts})
    got = s3.get_object(Bucket=other_bucket, Key="assembled")["Body"].read()
    assert hashlib.sha256(got).digest() == hashlib.sha256(body).digest()


def test_upload_part_copy_with_a_bad_range_is_refused(s3, bucket):
    s3.put_object(Bucket=bucket, Key="src", Body=b"0123456789")
    uid = s3.create_multipart_upload(Bucket=bucket, Key="k")["UploadId"]
    for rng in ("bytes=5-", "bytes=9-2"):
        with pytest.raises(botocore.exceptions.ClientError) as e:
            s3.upload_part_copy(Bucket=bucket, Key="k", UploadId=uid, PartNumber=1, CopySource={"Bucket": bucket, "Key": "src"}, CopySourceRange=rng)
        assert error_of(e)[0] == 400
    s3.abort_multipart_upload(Bucket=bucket, Key="k", UploadId=uid)
