"""Object tagging: tags on put (x-amz-tagging), Get/Put/DeleteObjectTagging (by version too,
without making a new version), S3's limits, the tag count on GET, and lifecycle tag filters."""

import time

import botocore
import pytest

from conftest import error_of


def test_tags_on_put_and_by_the_tagging_api(s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"x", Tagging="project=candy&team=s%20three")
    assert s3.get_object_tagging(Bucket=bucket, Key="k")["TagSet"] == [
        {"Key": "project", "Value": "candy"},
        {"Key": "team", "Value": "s three"},
    ]
    assert s3.get_object(Bucket=bucket, Key="k")["TagCount"] == 2
    s3.put_object_tagging(Bucket=bucket, Key="k", Tagging={"TagSet": [{"Key": "only", "Value": "one"}]})
    assert s3.get_object_tagging(Bucket=bucket, Key="k")["TagSet"] == [{"Key": "only", "Value": "one"}]
    s3.delete_object_tagging(Bucket=bucket, Key="k")
    assert s3.get_object_tagging(Bucket=bucket, Key="k")["TagSet"] == []
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"x"


def test_tag_limits(s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    eleven = [{"Key": f"k{i}", "Value": "v"} for i in range(11)]
    for bad in (eleven, [{"Key": "a", "Value": "1"}, {"Key": "a", "Value": "2"}], [{"Key": "k" * 129, "Value": "v"}], [{"Key": "aws:x", "Value": "v"}]):
        with pytest.raises(botocore.exceptions.ClientError) as e:
            s3.put_object_tagging(Bucket=bucket, Key="k", Tagging={"TagSet": bad})
        assert error_of(e) == (400, "InvalidTag")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.put_object(Bucket=bucket, Key="k2", Body=b"x", Tagging="&".join(f"k{i}=v" for i in range(11)))
    assert error_of(e) == (400, "InvalidTag")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.get_object_tagging(Bucket=bucket, Key="absent")
    assert error_of(e) == (404, "NoSuchKey")


def test_tagging_a_version_makes_no_new_version(s3, bucket):
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    v1 = s3.put_object(Bucket=bucket, Key="k", Body=b"one", Tagging="v=1")["VersionId"]
    v2 = s3.put_object(Bucket=bucket, Key="k", Body=b"two")["VersionId"]
    r = s3.put_object_tagging(Bucket=bucket, Key="k", VersionId=v1, Tagging={"TagSet": [{"Key": "v", "Value": "one"}]})
    assert r["VersionId"] == v1
    assert s3.get_object_tagging(Bucket=bucket, Key="k", VersionId=v1)["TagSet"] == [{"Key": "v", "Value": "one"}]
    assert s3.get_object_tagging(Bucket=bucket, Key="k")["TagSet"] == []
    versions = [v["VersionId"] for v in s3.list_object_versions(Bucket=bucket)["Versions"]]
    assert versions == [v2, v1]


def test_another_user_cannot_read_or_write_tags(s3, s3_bob, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"x", Tagging="a=1")
    for call in (
        lambda: s3_bob.get_object_tagging(Bucket=bucket, Key="k"),
        lambda: s3_bob.put_object_tagging(Bucket=bucket, Key="k", Tagging={"TagSet": []}),
    ):
        with pytest.raises(botocore.exceptions.ClientError) as e:
            call()
        assert error_of(e)[0] == 403


def test_lifecycle_rules_can_filter_on_tags(s3, bucket):
    s3.put_object(Bucket=bucket, Key="a", Body=b"x", Tagging="temp=yes")
    s3.put_object(Bucket=bucket, Key="b", Body=b"x", Tagging="temp=no")
    s3.put_object(Bucket=bucket, Key="c", Body=b"x")
    s3.put_object_tagging(Bucket=bucket, Key="c", Tagging={"TagSet": [{"Key": "temp", "Value": "yes"}]})
    s3.put_bucket_lifecycle_configuration(
        Bucket=bucket,
        LifecycleConfiguration={"Rules": [{"ID": "t", "Status": "Enabled", "Filter": {"Tag": {"Key": "temp", "Value": "yes"}}, "Expiration": {"Days": 1}}]},
    )
    deadline = time.monotonic() + 20
    while True:
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
        if keys == ["b"]:
            break
        assert time.monotonic() < deadline, keys
        time.sleep(0.5)
