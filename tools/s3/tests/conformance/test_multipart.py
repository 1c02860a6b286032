"""Multipart uploads: create / upload part / complete / abort, S3's ETag of a multipart object,
EntityTooSmall, InvalidPart, InvalidPartOrder, NoSuchUpload, ListParts, ListMultipartUploads."""

import hashlib
import os

import botocore
import pytest

from conftest import error_of

MIB = 1024 * 1024


def multipart_etag(parts):
    joined = b"".join(hashlib.md5(p).digest() for p in parts)
    return f'"{hashlib.md5(joined).hexdigest()}-{len(parts)}"'


def upload(s3, bucket, key, parts, **create):
    up = s3.create_multipart_upload(Bucket=bucket, Key=key, **create)
    uid = up["UploadId"]
    done = []
    for i, p in enumerate(parts, start=1):
        r = s3.upload_part(Bucket=bucket, Key=key, UploadId=uid, PartNumber=i, Body=p)
        assert r["ETag"] == f'"{hashlib.md5(p).hexdigest()}"'
        done.append({"PartNumber": i, "ETag": r["ETag"]})
    return uid, done


def test_a_multipart_object_has_s3s_etag_and_its_bytes(s3, bucket):
    parts = [os.urandom(5 * MIB), os.urandom(5 * MIB), os.urandom(1234)]
    uid, done = upload(s3, bucket, "mp", parts, ContentType="application/x-mp", Metadata={"kind": "multi"})
    r = s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=uid, MultipartUpload={"Parts": done})
    assert r["ETag"] == multipart_etag(parts)
    got = s3.get_object(Bucket=bucket, Key="mp")
    body = got["Body"].read()
    assert hashlib.sha256(body).digest() == hashlib.sha256(b"".join(parts)).digest()
    assert got["ETag"] == multipart_etag(parts)
    assert got["ContentType"] == "application/x-mp"
    assert got["Metadata"] == {"kind": "multi"}
    listed = s3.list_objects_v2(Bucket=bucket)["Contents"]
    assert listed[0]["ETag"] == multipart_etag(parts)
    assert listed[0]["Size"] == len(body)
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_a_small_part_before_the_last_is_entity_too_small(s3, bucket):
    uid, done = upload(s3, bucket, "small", [b"a" * 1024, b"b" * 1024])
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.complete_multipart_upload(Bucket=bucket, Key="small", UploadId=uid, MultipartUpload={"Parts": done})
    assert error_of(e) == (400, "EntityTooSmall")
    s3.abort_multipart_upload(Bucket=bucket, Key="small", UploadId=uid)


def test_a_single_small_part_is_a_whole_object(s3, bucket):
    uid, done = upload(s3, bucket, "one", [b"only part"])
    r = s3.complete_multipart_upload(Bucket=bucket, Key="one", UploadId=uid, MultipartUpload={"Parts": done})
    assert r["ETag"] == multipart_etag([b"only part"])
    assert s3.get_object(Bucket=bucket, Key="one")["Body"].read() == b"only part"


def test_a_wrong_etag_or_missing_part_is_invalid_part(s3, bucket):
    uid, done = upload(s3, bucket, "k", [b"x" * 100])
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.complete_multipart_upload(
            Bucket=bucket, Key="k", UploadId=uid, MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": '"00"'}]}
        )
    assert error_of(e) == (400, "InvalidPart")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.complete_multipart_upload(
            Bucket=bucket, Key="k", UploadId=uid, MultipartUpload={"Parts": done + [{"PartNumber": 2, "ETag": done[0]["ETag"]}]}
        )
    assert error_of(e) == (400, "InvalidPart")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.head_object(Bucket=bucket, Key="k")
    assert error_of(e)[0] == 404
    s3.abort_multipart_upload(Bucket=bucket, Key="k", UploadId=uid)


def test_parts_out_of_order_are_invalid_part_order(s3, bucket):
    uid, done = upload(s3, bucket, "k", [b"1" * (5 * MIB), b"2"])
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.complete_multipart_upload(Bucket=bucket, Key="k", UploadId=uid, MultipartUpload={"Parts": list(reversed(done))})
    assert error_of(e) == (400, "InvalidPartOrder")
    s3.abort_multipart_upload(Bucket=bucket, Key="k", UploadId=uid)


def test_unknown_and_aborted_uploads_are_no_such_upload(s3, bucket):
    for uid in ("0000000000000001", "garbage"):
        with pytest.raises(botocore.exceptions.ClientError) as e:
            s3.upload_part(Bucket=bucket, Key="k", UploadId=uid, PartNumber=1, Body=b"x")
        assert error_of(e) == (404, "NoSuchUpload")
    uid, done = upload(s3, bucket, "k", [b"x"])
    s3.abort_multipart_upload(Bucket=bucket, Key="k", UploadId=uid)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.complete_multipart_upload(Bucket=bucket, Key="k", UploadId=uid, MultipartUpload={"Parts": done})
    assert error_of(e) == (404, "NoSuchUpload")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.list_parts(Bucket=bucket, Key="k", UploadId=uid)
    assert error_of(e) == (404, "NoSuchUpload")


def test_a_part_number_out_of_range_is_invalid_argument(s3, bucket):
    uid = s3.create_multipart_upload(Bucket=bucket, Key="k")["UploadId"]
    for n in (0, 10001):
        with pytest.raises(botocore.exceptions.ClientError) as e:
            s3.upload_part(Bucket=bucket, Key="k", UploadId=uid, PartNumber=n, Body=b"x")
        assert error_of(e) == (400, "InvalidArgument")
    s3.abort_multipart_upload(Bucket=bucket, Key="k", UploadId=uid)


def test_list_parts_pages_and_reports_etags(s3, bucket):
    parts = [bytes([i]) * (100 + i) for i in range(5)]
    uid, done = upload(s3, bucket, "k", parts)
    first = s3.list_parts(Bucket=bucket, Key="k", UploadId=uid, MaxParts=3)
    assert [p["PartNumber"] for p in first["Parts"]] == [1, 2, 3]
    assert first["IsTruncated"] is True
    assert first["NextPartNumberMarker"] == 3
    assert [p["ETag"] for p in first["Parts"]] == [d["ETag"] for d in done[:3]]
    assert [p["Size"] for p in first["Parts"]] == [100, 101, 102]
    assert first["Owner"]["ID"] == "a1" * 32
    rest = s3.list_parts(Bucket=bucket, Key="k", UploadId=uid, PartNumberMarker=3)
    assert [p["PartNumber"] for p in rest["Parts"]] == [4, 5]
    assert rest["IsTruncated"] is False
    s3.abort_multipart_upload(Bucket=bucket, Key="k", UploadId=uid)


def test_a_part_uploaded_again_replaces_the_first(s3, bucket):
    uid = s3.create_multipart_upload(Bucket=bucket, Key="k")["UploadId"]
    s3.upload_part(Bucket=bucket, Key="k", UploadId=uid, PartNumber=1, Body=b"first")
    r = s3.upload_part(Bucket=bucket, Key="k", UploadId=uid, PartNumber=1, Body=b"second")
    s3.complete_multipart_upload(
        Bucket=bucket, Key="k", UploadId=uid, MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": r["ETag"]}]}
    )
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"second"


def test_list_multipart_uploads_with_prefix_delimiter_and_markers(s3, bucket):
    ids = {}
    for key in ("a/1", "a/2", "b", "c/x"):
        ids[key] = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    r = s3.list_multipart_uploads(Bucket=bucket)
    assert [u["Key"] for u in r["Uploads"]] == ["a/1", "a/2", "b", "c/x"]
    assert r["Uploads"][0]["UploadId"] == ids["a/1"]
    assert r["Uploads"][0]["Initiator"]["ID"] == "a1" * 32
    r = s3.list_multipart_uploads(Bucket=bucket, Delimiter="/")
    assert [u["Key"] for u in r["Uploads"]] == ["b"]
    assert [p["Prefix"] for p in r["CommonPrefixes"]] == ["a/", "c/"]
    r = s3.list_multipart_uploads(Bucket=bucket, Prefix="a/", MaxUploads=1)
    assert [u["Key"] for u in r["Uploads"]] == ["a/1"]
    assert r["IsTruncated"] is True
    r = s3.list_multipart_uploads(
        Bucket=bucket, Prefix="a/", KeyMarker=r["NextKeyMarker"], UploadIdMarker=r["NextUploadIdMarker"]
    )
    assert [u["Key"] for u in r["Uploads"]] == ["a/2"]
    assert r["IsTruncated"] is False
    for key, uid in ids.items():
        s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=uid)
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_a_wrong_content_md5_on_a_part_commits_no_part(s3, bucket):
    import base64

    uid = s3.create_multipart_upload(Bucket=bucket, Key="k")["UploadId"]
    bad = base64.b64encode(hashlib.md5(b"other").digest()).decode()
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.upload_part(Bucket=bucket, Key="k", UploadId=uid, PartNumber=1, Body=b"part", ContentMD5=bad)
    assert error_of(e) == (400, "BadDigest")
    assert s3.list_parts(Bucket=bucket, Key="k", UploadId=uid).get("Parts", []) == []
    s3.abort_multipart_upload(Bucket=bucket, Key="k", UploadId=uid)


def test_get_and_head_by_part_number(s3, bucket):
    parts = [os.urandom(5 * MIB), os.urandom(5 * MIB), os.urandom(777)]
    uid, done = upload(s3, bucket, "mp", parts)
    s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=uid, MultipartUpload={"Parts": done})
    for n, p in enumerate(parts, start=1):
        got = s3.get_object(Bucket=bucket, Key="mp", PartNumber=n)
        assert got["Body"].read() == p
        assert got["PartsCount"] == 3
        assert got["ResponseMetadata"]["HTTPStatusCode"] == 206
        head = s3.head_object(Bucket=bucket, Key="mp", PartNumber=n)
        assert head["ContentLength"] == len(p)
        assert head["PartsCount"] == 3
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.get_object(Bucket=bucket, Key="mp", PartNumber=4)
    assert error_of(e) == (416, "InvalidPartNumber")
    s3.put_object(Bucket=bucket, Key="single", Body=b"whole")
    assert s3.get_object(Bucket=bucket, Key="single", PartNumber=1)["Body"].read() == b"whole"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.get_object(Bucket=bucket, Key="single", PartNumber=2)
    assert error_of(e) == (416, "InvalidPartNumber")
