"""Lifecycle: configuration with S3's validation, and the worker expiring current objects,
noncurrent versions and lone delete markers, and aborting incomplete uploads. The suite's
gateway runs with a lifecycle "day" of one second, swept every second."""

import datetime
import time

import botocore
import pytest

from conftest import error_of


def eventually(check, timeout_s=20):
    deadline = time.monotonic() + timeout_s
    while True:
        if check():
            return
        assert time.monotonic() < deadline, "the lifecycle worker did not act in time"
        time.sleep(0.5)


def rule(**kwargs):
    r = {"ID": kwargs.pop("ID", "r"), "Status": "Enabled", "Filter": {"Prefix": kwargs.pop("Prefix", "")}}
    r.update(kwargs)
    return r


def put(s3, bucket, *rules):
    s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": list(rules)})


def invalid(s3, bucket, code, *rules):
    with pytest.raises(botocore.exceptions.ClientError) as e:
        put(s3, bucket, *rules)
    assert error_of(e) == (400, code)


def test_configuration_round_trip_and_validation(s3, bucket):
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.get_bucket_lifecycle_configuration(Bucket=bucket)
    assert error_of(e) == (404, "NoSuchLifecycleConfiguration")
    put(s3, bucket, rule(ID="logs", Prefix="logs/", Expiration={"Days": 30}, AbortIncompleteMultipartUpload={"DaysAfterInitiation": 7}))
    got = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    assert got[0]["ID"] == "logs"
    assert got[0]["Expiration"]["Days"] == 30
    assert got[0]["Filter"]["Prefix"] == "logs/"
    assert got[0]["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"] == 7
    invalid(s3, bucket, "InvalidArgument", rule(Expiration={"Days": 0}))
    invalid(s3, bucket, "MalformedXML", rule(Expiration={"Days": 3, "ExpiredObjectDeleteMarker": True}))
    invalid(s3, bucket, "InvalidArgument", rule(Expiration={"Date": datetime.datetime(2030, 1, 1, 12, tzinfo=datetime.timezone.utc)}))
    invalid(s3, bucket, "InvalidArgument", rule(ID="same", Expiration={"Days": 1}), rule(ID="same", Expiration={"Days": 2}))
    invalid(s3, bucket, "InvalidRequest", rule(Transitions=[{"Days": 1, "StorageClass": "GLACIER"}]))
    s3.delete_bucket_lifecycle(Bucket=bucket)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.get_bucket_lifecycle_configuration(Bucket=bucket)
    assert error_of(e)[0] == 404


def test_current_objects_expire_under_their_prefix(s3, bucket):
    s3.put_object(Bucket=bucket, Key="tmp/a", Body=b"x")
    s3.put_object(Bucket=bucket, Key="keep/b", Body=b"x")
    put(s3, bucket, rule(Prefix="tmp/", Expiration={"Days": 1}))
    eventually(lambda: s3.list_objects_v2(Bucket=bucket, Prefix="tmp/")["KeyCount"] == 0)
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["keep/b"]


def test_size_filters_choose_what_expires(s3, bucket):
    s3.put_object(Bucket=bucket, Key="small", Body=b"x")
    s3.put_object(Bucket=bucket, Key="big", Body=b"x" * 5000)
    put(s3, bucket, rule(Filter={"ObjectSizeGreaterThan": 1000}, Expiration={"Days": 1}))
    eventually(lambda: [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])] == ["small"])


def test_size_filters_see_an_encrypted_object_s_plaintext_size(s3, bucket):
    # 1000 bytes of plaintext are stored as 1028 (one chunk's nonce and tag): a rule for objects
    # under 1010 bytes expires it, one for objects over 1010 keeps it.
    s3.put_object(Bucket=bucket, Key="under", Body=b"x" * 1000, ServerSideEncryption="AES256")
    s3.put_object(Bucket=bucket, Key="over", Body=b"x" * 1000, ServerSideEncryption="AES256")
    put(
        s3, bucket,
        rule(ID="lt", Filter={"And": {"Prefix": "under", "ObjectSizeLessThan": 1010}}, Expiration={"Days": 1}),
        rule(ID="gt", Filter={"And": {"Prefix": "over", "ObjectSizeGreaterThan": 1010}}, Expiration={"Days": 1}),
    )
    eventually(lambda: [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])] == ["over"])
    time.sleep(3)
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["over"]


def test_noncurrent_versions_and_lone_delete_markers_expire(s3, bucket):
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    old = s3.put_object(Bucket=bucket, Key="k", Body=b"old")["VersionId"]
    new = s3.put_object(Bucket=bucket, Key="k", Body=b"new")["VersionId"]
    gone = s3.put_object(Bucket=bucket, Key="gone", Body=b"x")["VersionId"]
    s3.delete_object(Bucket=bucket, Key="gone")
    s3.delete_object(Bucket=bucket, Key="gone", VersionId=gone)
    put(s3, bucket, rule(NoncurrentVersionExpiration={"NoncurrentDays": 1}, Expiration={"ExpiredObjectDeleteMarker": True}))

    def settled():
        r = s3.list_object_versions(Bucket=bucket)
        versions = [(v["Key"], v["VersionId"]) for v in r.get("Versions", [])]
        markers = r.get("DeleteMarkers", [])
        return versions == [("k", new)] and markers == []

    eventually(settled)
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"new"
    assert old != new


def test_incomplete_uploads_are_aborted(s3, bucket):
    uid = s3.create_multipart_upload(Bucket=bucket, Key="up/big")["UploadId"]
    s3.upload_part(Bucket=bucket, Key="up/big", UploadId=uid, PartNumber=1, Body=b"x")
    keep = s3.create_multipart_upload(Bucket=bucket, Key="other")["UploadId"]
    put(s3, bucket, rule(Prefix="up/", AbortIncompleteMultipartUpload={"DaysAfterInitiation": 1}))
    eventually(lambda: [u["Key"] for u in s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])] == ["other"])
    s3.abort_multipart_upload(Bucket=bucket, Key="other", UploadId=keep)
