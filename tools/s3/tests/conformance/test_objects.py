"""Objects: put / get / head / delete, metadata and stored headers, ETags and checksums,
ranges, conditional requests, response overrides, multi-object delete."""

import base64
import datetime
import hashlib
import os
import zlib

import botocore
import pytest

from conftest import error_of


def md5_hex(data):
    return hashlib.md5(data).hexdigest()


def test_put_get_round_trip_with_metadata_and_stored_headers(s3, bucket):
    body = os.urandom(3000)
    expires = datetime.datetime(2030, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
    put = s3.put_object(
        Bucket=bucket,
        Key="dir/obj.bin",
        Body=body,
        ContentType="application/x-test",
        Metadata={"color": "blue", "Shape": "round"},
        CacheControl="max-age=60",
        ContentDisposition='attachment; filename="obj.bin"',
        ContentEncoding="identity",
        ContentLanguage="en-GB",
        Expires=expires,
    )
    assert put["ETag"] == f'"{md5_hex(body)}"'
    assert "VersionId" not in put
    got = s3.get_object(Bucket=bucket, Key="dir/obj.bin")
    assert got["Body"].read() == body
    assert got["ContentLength"] == len(body)
    assert got["ETag"] == put["ETag"]
    assert got["ContentType"] == "application/x-test"
    assert got["Metadata"] == {"color": "blue", "shape": "round"}
    assert got["CacheControl"] == "max-age=60"
    assert got["ContentDisposition"] == 'attachment; filename="obj.bin"'
    assert got["ContentEncoding"] == "identity"
    assert got["ContentLanguage"] == "en-GB"
    assert got["Expires"] == expires
    assert got["AcceptRanges"] == "bytes"
    head = s3.head_object(Bucket=bucket, Key="dir/obj.bin")
    assert head["ContentLength"] == len(body)
    assert head["ETag"] == put["ETag"]
    assert head["Metadata"] == {"color": "blue", "shape": "round"}
    assert abs((head["LastModified"] - datetime.datetime.now(datetime.timezone.utc)).total_seconds()) < 60


def test_an_empty_object(s3, bucket):
    put = s3.put_object(Bucket=bucket, Key="empty", Body=b"")
    assert put["ETag"] == f'"{md5_hex(b"")}"'
    got = s3.get_object(Bucket=bucket, Key="empty")
    assert got["Body"].read() == b""
    assert got["ContentLength"] == 0


def test_a_large_object_streams_both_ways(s3, bucket):
    body = os.urandom(24 * 1024 * 1024 + 7)
    put = s3.put_object(Bucket=bucket, Key="large", Body=body)
    assert put["ETag"] == f'"{md5_hex(body)}"'
    got = s3.get_object(Bucket=bucket, Key="large")
    assert got["ContentLength"] == len(body)
    assert hashlib.sha256(got["Body"].read()).digest() == hashlib.sha256(body).digest()


def test_overwrite_replaces_bytes_and_metadata(s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"one", Metadata={"a": "1"})
    s3.put_object(Bucket=bucket, Key="k", Body=b"second", Metadata={"b": "2"})
    got = s3.get_object(Bucket=bucket, Key="k")
    assert got["Body"].read() == b"second"
    assert got["Metadata"] == {"b": "2"}


def test_missing_key_is_no_such_key_with_request_id_and_resource(s3, bucket):
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.get_object(Bucket=bucket, Key="nope/missing.txt")
    assert error_of(e) == (404, "NoSuchKey")
    err = e.value.response["Error"]
    meta = e.value.response["ResponseMetadata"]
    assert meta["RequestId"]
    assert meta["HTTPHeaders"]["x-amz-request-id"] == meta["RequestId"]
    assert err["Message"]
    assert err.get("Resource") == f"/{bucket}/nope/missing.txt"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.head_object(Bucket=bucket, Key="nope")
    assert error_of(e)[0] == 404


def test_every_reply_has_a_request_id(s3, bucket):
    r = s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    assert len(r["ResponseMetadata"]["HTTPHeaders"]["x-amz-request-id"]) == 16
    r = s3.list_buckets()
    assert r["ResponseMetadata"]["HTTPHeaders"]["x-amz-request-id"]


def test_content_md5_is_verified_and_a_mismatch_commits_nothing(s3, bucket):
    body = b"verified bytes"
    good = base64.b64encode(hashlib.md5(body).digest()).decode()
    s3.put_object(Bucket=bucket, Key="k", Body=body, ContentMD5=good)
    bad = base64.b64encode(hashlib.md5(b"other").digest()).decode()
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.put_object(Bucket=bucket, Key="k", Body=b"replacement", ContentMD5=bad)
    assert error_of(e) == (400, "BadDigest")
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == body
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.put_object(Bucket=bucket, Key="fresh", Body=b"x", ContentMD5=bad)
    assert error_of(e) == (400, "BadDigest")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.head_object(Bucket=bucket, Key="fresh")
    assert error_of(e)[0] == 404


def test_a_content_md5_that_is_not_one_is_invalid_digest(s3, bucket):
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.put_object(Bucket=bucket, Key="k", Body=b"x", ContentMD5="not-base64-md5")
    assert error_of(e) == (400, "InvalidDigest")


def crc32c(data):
    """CRC-32C (Castagnoli), bit by bit: botocore needs its optional CRT package for it."""
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def test_crc32c_from_a_header_is_verified_and_stored(s3, bucket):
    body = b"123456789"
    assert crc32c(body) == 0xE3069283  # the catalogue's check value
    value = base64.b64encode(crc32c(body).to_bytes(4, "big")).decode()
    put = s3.put_object(Bucket=bucket, Key="c", Body=body, ChecksumCRC32C=value)
    assert put["ChecksumCRC32C"] == value
    head = s3.head_object(Bucket=bucket, Key="c", ChecksumMode="ENABLED")
    assert head["ChecksumCRC32C"] == value
    wrong = base64.b64encode((crc32c(body) ^ 1).to_bytes(4, "big")).decode()
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.put_object(Bucket=bucket, Key="c2", Body=body, ChecksumCRC32C=wrong)
    assert error_of(e) == (400, "BadDigest")


def test_checksums_are_returned_only_when_asked_and_not_for_ranges(s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"0123456789", ChecksumAlgorithm="SHA256")
    assert "ChecksumSHA256" not in s3.head_object(Bucket=bucket, Key="k")
    assert "ChecksumSHA256" in s3.head_object(Bucket=bucket, Key="k", ChecksumMode="ENABLED")
    ranged = s3.get_object(Bucket=bucket, Key="k", Range="bytes=0-3", ChecksumMode="ENABLED")
    assert "ChecksumSHA256" not in ranged
    assert ranged["Body"].read() == b"0123"


@pytest.mark.parametrize("algorithm", ["CRC32", "SHA1", "SHA256"])
def test_checksums_are_computed_stored_and_returned(s3, bucket, algorithm):
    body = os.urandom(100_000)
    put = s3.put_object(Bucket=bucket, Key="sum", Body=body, ChecksumAlgorithm=algorithm)
    field = f"Checksum{algorithm}"
    assert put[field]
    head = s3.head_object(Bucket=bucket, Key="sum", ChecksumMode="ENABLED")
    assert head[field] == put[field]
    if algorithm == "CRC32":
        assert base64.b64decode(put[field]) == zlib.crc32(body).to_bytes(4, "big")
    if algorithm == "SHA256":
        assert base64.b64decode(put[field]) == hashlib.sha256(body).digest()


def test_a_wrong_checksum_header_commits_nothing(s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"kept")
    wrong = base64.b64encode(b"\x00\x00\x00\x00").decode()
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.put_object(Bucket=bucket, Key="k", Body=b"not kept", ChecksumCRC32=wrong)
    assert error_of(e) == (400, "BadDigest")
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"kept"


@pytest.mark.parametrize(
    "header,expected,content_range",
    [
        ("bytes=0-4", b"01234", "bytes 0-4/10"),
        ("bytes=5-", b"56789", "bytes 5-9/10"),
        ("bytes=-3", b"789", "bytes 7-9/10"),
        ("bytes=8-100", b"89", "bytes 8-9/10"),
    ],
)
def test_single_ranges(s3, bucket, header, expected, content_range):
    s3.put_object(Bucket=bucket, Key="digits", Body=b"0123456789")
    got = s3.get_object(Bucket=bucket, Key="digits", Range=header)
    assert got["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert got["Body"].read() == expected
    assert got["ContentRange"] == content_range
    assert got["ContentLength"] == len(expected)


def test_an_unsatisfiable_range_is_invalid_range(s3, bucket):
    s3.put_object(Bucket=bucket, Key="digits", Body=b"0123456789")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.get_object(Bucket=bucket, Key="digits", Range="bytes=10-20")
    assert error_of(e) == (416, "InvalidRange")


def test_conditional_gets(s3, bucket):
    put = s3.put_object(Bucket=bucket, Key="k", Body=b"conditional")
    etag = put["ETag"]
    past = datetime.datetime(2000, 1, 1, tzinfo=datetime.timezone.utc)
    future = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=1)
    assert s3.get_object(Bucket=bucket, Key="k", IfMatch=etag)["Body"].read() == b"conditional"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.get_object(Bucket=bucket, Key="k", IfMatch='"0123"')
    assert error_of(e) == (412, "PreconditionFailed")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.get_object(Bucket=bucket, Key="k", IfNoneMatch=etag)
    assert error_of(e)[0] == 304
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.get_object(Bucket=bucket, Key="k", IfModifiedSince=future)
    assert error_of(e)[0] == 304
    assert s3.get_object(Bucket=bucket, Key="k", IfModifiedSince=past)["Body"].read() == b"conditional"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.get_object(Bucket=bucket, Key="k", IfUnmodifiedSince=past)
    assert error_of(e) == (412, "PreconditionFailed")
    # If-Match holds, so If-Unmodified-Since is not considered.
    assert s3.get_object(Bucket=bucket, Key="k", IfMatch=etag, IfUnmodifiedSince=past)["Body"].read()
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.head_object(Bucket=bucket, Key="k", IfNoneMatch=etag)
    assert error_of(e)[0] == 304
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.head_object(Bucket=bucket, Key="k", IfMatch='"zzz"')
    assert error_of(e)[0] == 412


def test_conditional_puts(s3, bucket):
    first = s3.put_object(Bucket=bucket, Key="k", Body=b"first", IfNoneMatch="*")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.put_object(Bucket=bucket, Key="k", Body=b"second", IfNoneMatch="*")
    assert error_of(e) == (412, "PreconditionFailed")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.put_object(Bucket=bucket, Key="k", Body=b"second", IfMatch='"ffff"')
    assert error_of(e) == (412, "PreconditionFailed")
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"first"
    s3.put_object(Bucket=bucket, Key="k", Body=b"second", IfMatch=first["ETag"])
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"second"


def test_response_overrides(s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"x", ContentType="text/plain")
    got = s3.get_object(
        Bucket=bucket,
        Key="k",
        ResponseContentType="application/json",
        ResponseContentDisposition="inline",
        ResponseCacheControl="no-store",
        ResponseContentLanguage="fr",
        ResponseContentEncoding="gzip",
        ResponseExpires=datetime.datetime(2031, 1, 1, tzinfo=datetime.timezone.utc),
    )
    assert got["ContentType"] == "application/json"
    assert got["ContentDisposition"] == "inline"
    assert got["CacheControl"] == "no-store"
    assert got["ContentLanguage"] == "fr"
    assert got["ContentEncoding"] == "gzip"
    assert got["Expires"].year == 2031


def test_delete_succeeds_on_missing_keys(s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    r = s3.delete_object(Bucket=bucket, Key="k")
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 204
    r = s3.delete_object(Bucket=bucket, Key="k")
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.get_object(Bucket=bucket, Key="k")
    assert error_of(e) == (404, "NoSuchKey")


def test_multi_object_delete_reports_each_key(s3, bucket):
    for k in ("a", "b", "c"):
        s3.put_object(Bucket=bucket, Key=k, Body=b"x")
    r = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "a"}, {"Key": "b"}, {"Key": "absent"}]})
    assert sorted(d["Key"] for d in r["Deleted"]) == ["a", "absent", "b"]
    assert "Errors" not in r
    quiet = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "c"}], "Quiet": True})
    assert quiet.get("Deleted", []) == []
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


def test_multi_object_delete_names_a_bad_version_in_its_errors(s3, bucket):
    s3.put_object(Bucket=bucket, Key="a", Body=b"x")
    r = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "a", "VersionId": "not-a-version"}, {"Key": "a"}]})
    assert [d["Key"] for d in r["Deleted"]] == ["a"]
    assert len(r["Errors"]) == 1
    assert r["Errors"][0]["Key"] == "a"
    assert r["Errors"][0]["VersionId"] == "not-a-version"
    assert r["Errors"][0]["Code"]


def test_keys_with_unusual_characters(s3, bucket):
    keys = ["a b", "ünïcödé/ключ", "q?x=1&y=2", "plus+sign", "tab\tkey", "percent%20", "../dots"]
    for k in keys:
        s3.put_object(Bucket=bucket, Key=k, Body=k.encode())
    for k in keys:
        assert s3.get_object(Bucket=bucket, Key=k)["Body"].read() == k.encode()
    listed = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert sorted(listed, key=lambda s: s.encode()) == sorted(keys, key=lambda s: s.encode())


def test_a_key_over_1024_bytes_is_refused(s3, bucket):
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.put_object(Bucket=bucket, Key="k" * 1025, Body=b"x")
    assert error_of(e)[0] == 400


def test_get_object_attributes(s3, bucket):
    put = s3.put_object(Bucket=bucket, Key="k", Body=b"attributes", ChecksumAlgorithm="SHA256")
    r = s3.get_object_attributes(Bucket=bucket, Key="k", ObjectAttributes=["ETag", "ObjectSize", "StorageClass", "Checksum"])
    # AWS writes this ETag without quotes; s3s's ETag type always quotes it (noted in the docs).
    assert r["ETag"].strip('"') == put["ETag"].strip('"')
    assert r["ObjectSize"] == 10
    assert r["StorageClass"] == "STANDARD"
    assert r["Checksum"]["ChecksumSHA256"] == put["ChecksumSHA256"]
    assert r["LastModified"] is not None
    only_size = s3.get_object_attributes(Bucket=bucket, Key="k", ObjectAttributes=["ObjectSize"])
    assert "ETag" not in only_size and only_size["ObjectSize"] == 10
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.get_object_attributes(Bucket=bucket, Key="absent", ObjectAttributes=["ETag"])
    assert error_of(e) == (404, "NoSuchKey")
