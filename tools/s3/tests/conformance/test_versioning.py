"""Versioning: bucket states, version ids on every reply where S3 sends them, reads and deletes
by version, delete markers, and ListObjectVersions with its markers."""

import botocore
import pytest

from conftest import error_of


def versioned(s3, bucket):
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    return bucket


def test_a_new_bucket_has_no_versioning_status(s3, bucket):
    r = s3.get_bucket_versioning(Bucket=bucket)
    assert "Status" not in r
    put = s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    assert "VersionId" not in put
    assert "VersionId" not in s3.head_object(Bucket=bucket, Key="k")


def test_enable_then_suspend(s3, bucket):
    versioned(s3, bucket)
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Suspended"})
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Suspended"


def test_each_put_is_a_version_readable_by_id(s3, bucket):
    versioned(s3, bucket)
    v1 = s3.put_object(Bucket=bucket, Key="k", Body=b"one")["VersionId"]
    v2 = s3.put_object(Bucket=bucket, Key="k", Body=b"two")["VersionId"]
    assert v1 != v2 and v1 != "null"
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"two"
    got = s3.get_object(Bucket=bucket, Key="k", VersionId=v1)
    assert got["Body"].read() == b"one"
    assert got["VersionId"] == v1
    assert s3.head_object(Bucket=bucket, Key="k", VersionId=v2)["VersionId"] == v2
    assert s3.head_object(Bucket=bucket, Key="k")["VersionId"] == v2


def test_a_delete_writes_a_marker_and_the_versions_stay(s3, bucket):
    versioned(s3, bucket)
    v1 = s3.put_object(Bucket=bucket, Key="k", Body=b"one")["VersionId"]
    d = s3.delete_object(Bucket=bucket, Key="k")
    assert d["DeleteMarker"] is True
    marker = d["VersionId"]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.get_object(Bucket=bucket, Key="k")
    assert error_of(e) == (404, "NoSuchKey")
    headers = e.value.response["ResponseMetadata"]["HTTPHeaders"]
    assert headers.get("x-amz-delete-marker") == "true"
    assert headers.get("x-amz-version-id") == marker
    assert s3.get_object(Bucket=bucket, Key="k", VersionId=v1)["Body"].read() == b"one"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.get_object(Bucket=bucket, Key="k", VersionId=marker)
    assert error_of(e)[0] == 405
    # Deleting the marker by id brings the object back.
    r = s3.delete_object(Bucket=bucket, Key="k", VersionId=marker)
    assert r["VersionId"] == marker
    assert r.get("DeleteMarker") is True
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"one"


def test_deleting_a_version_by_id_removes_it_for_good(s3, bucket):
    versioned(s3, bucket)
    v1 = s3.put_object(Bucket=bucket, Key="k", Body=b"one")["VersionId"]
    v2 = s3.put_object(Bucket=bucket, Key="k", Body=b"two")["VersionId"]
    r = s3.delete_object(Bucket=bucket, Key="k", VersionId=v2)
    assert r["VersionId"] == v2
    assert "DeleteMarker" not in r
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"one"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.get_object(Bucket=bucket, Key="k", VersionId=v2)
    assert error_of(e) == (404, "NoSuchVersion")
    assert s3.head_object(Bucket=bucket, Key="k")["VersionId"] == v1


def test_a_malformed_version_id_is_invalid_argument(s3, bucket):
    versioned(s3, bucket)
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.get_object(Bucket=bucket, Key="k", VersionId="bogus")
    assert error_of(e) == (400, "InvalidArgument")


def test_suspended_writes_replace_the_null_version(s3, bucket):
    versioned(s3, bucket)
    kept = s3.put_object(Bucket=bucket, Key="k", Body=b"kept")["VersionId"]
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Suspended"})
    assert s3.put_object(Bucket=bucket, Key="k", Body=b"null-1")["VersionId"] == "null"
    assert s3.put_object(Bucket=bucket, Key="k", Body=b"null-2")["VersionId"] == "null"
    versions = s3.list_object_versions(Bucket=bucket, Prefix="k")["Versions"]
    assert sorted(v["VersionId"] for v in versions) == sorted([kept, "null"])
    assert s3.get_object(Bucket=bucket, Key="k", VersionId="null")["Body"].read() == b"null-2"
    assert s3.get_object(Bucket=bucket, Key="k", VersionId=kept)["Body"].read() == b"kept"


def test_list_object_versions_orders_and_pages(s3, bucket):
    versioned(s3, bucket)
    ids = {}
    for key in ("a", "b"):
        ids[key] = [s3.put_object(Bucket=bucket, Key=key, Body=f"{key}{i}".encode())["VersionId"] for i in range(3)]
    marker = s3.delete_object(Bucket=bucket, Key="b")["VersionId"]
    r = s3.list_object_versions(Bucket=bucket)
    assert [(v["Key"], v["VersionId"]) for v in r["Versions"]] == [("a", i) for i in reversed(ids["a"])] + [
        ("b", i) for i in reversed(ids["b"])
    ]
    latest = {(v["Key"], v["VersionId"]) for v in r["Versions"] if v["IsLatest"]}
    assert latest == {("a", ids["a"][-1])}
    assert [(m["Key"], m["VersionId"], m["IsLatest"]) for m in r["DeleteMarkers"]] == [("b", marker, True)]
    assert all(v["Size"] == 2 and v["ETag"] for v in r["Versions"])
    # Pages of two entries, continued by the markers, give the same seven entries.
    seen = []
    kwargs = {"Bucket": bucket, "MaxKeys": 2}
    for _ in range(10):
        page = s3.list_object_versions(**kwargs)
        seen += [(v["Key"], v["VersionId"]) for v in page.get("Versions", [])]
        seen += [(m["Key"], m["VersionId"]) for m in page.get("DeleteMarkers", [])]
        if not page["IsTruncated"]:
            break
        kwargs.update(KeyMarker=page["NextKeyMarker"], VersionIdMarker=page["NextVersionIdMarker"])
    assert len(seen) == 7
    assert len(set(seen)) == 7


def test_list_object_versions_with_a_delimiter(s3, bucket):
    versioned(s3, bucket)
    for key in ("d/1", "d/2", "e"):
        s3.put_object(Bucket=bucket, Key=key, Body=b"x")
    r = s3.list_object_versions(Bucket=bucket, Delimiter="/")
    assert [p["Prefix"] for p in r["CommonPrefixes"]] == ["d/"]
    assert [v["Key"] for v in r["Versions"]] == ["e"]


def test_multi_delete_in_a_versioned_bucket_reports_markers(s3, bucket):
    versioned(s3, bucket)
    v = s3.put_object(Bucket=bucket, Key="a", Body=b"x")["VersionId"]
    s3.put_object(Bucket=bucket, Key="b", Body=b"x")
    r = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "a", "VersionId": v}, {"Key": "b"}]})
    by_key = {d["Key"]: d for d in r["Deleted"]}
    assert by_key["a"]["VersionId"] == v
    assert by_key["b"]["DeleteMarker"] is True
    assert by_key["b"]["DeleteMarkerVersionId"]


def test_copy_of_a_version(s3, bucket):
    versioned(s3, bucket)
    v1 = s3.put_object(Bucket=bucket, Key="src", Body=b"old")["VersionId"]
    s3.put_object(Bucket=bucket, Key="src", Body=b"new")
    r = s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "src", "VersionId": v1})
    assert r["CopySourceVersionId"] == v1
    assert r["VersionId"]
    assert s3.get_object(Bucket=bucket, Key="dst")["Body"].read() == b"old"
