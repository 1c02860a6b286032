"""Object lock: enabled at bucket creation, default retention, GOVERNANCE and COMPLIANCE
retention, legal hold, the governance bypass; locked versions cannot be deleted."""

import datetime

import botocore
import pytest

from conftest import empty_and_delete, error_of, unique_name


def in_days(n):
    return datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=n)


@pytest.fixture
def locked_bucket(s3):
    name = unique_name("lock")
    s3.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
    yield name
    # Versions under COMPLIANCE retention outlive the test: leave the bucket (as S3 would).
    try:
        empty_and_delete(s3, name)
    except botocore.exceptions.ClientError:
        pass


def denied(call, code="AccessDenied", status=403):
    with pytest.raises(botocore.exceptions.ClientError) as e:
        call()
    assert error_of(e) == (status, code)


def test_a_lock_enabled_bucket_is_versioned_and_cannot_be_suspended(s3, locked_bucket):
    assert s3.get_bucket_versioning(Bucket=locked_bucket)["Status"] == "Enabled"
    cfg = s3.get_object_lock_configuration(Bucket=locked_bucket)["ObjectLockConfiguration"]
    assert cfg["ObjectLockEnabled"] == "Enabled"
    denied(lambda: s3.put_bucket_versioning(Bucket=locked_bucket, VersioningConfiguration={"Status": "Suspended"}), "InvalidBucketState", 409)


def test_a_bucket_without_lock_refuses_lock_requests(s3, bucket):
    denied(lambda: s3.get_object_lock_configuration(Bucket=bucket), "ObjectLockConfigurationNotFoundError", 404)
    denied(
        lambda: s3.put_object(Bucket=bucket, Key="k", Body=b"x", ObjectLockMode="GOVERNANCE", ObjectLockRetainUntilDate=in_days(1)),
        "InvalidRequest",
        400,
    )
    denied(
        lambda: s3.put_object_lock_configuration(Bucket=bucket, ObjectLockConfiguration={"ObjectLockEnabled": "Enabled"}),
        "InvalidBucketState",
        409,
    )


def test_governance_retention_protects_a_version_unless_bypassed(s3, locked_bucket):
    v = s3.put_object(Bucket=locked_bucket, Key="k", Body=b"x", ObjectLockMode="GOVERNANCE", ObjectLockRetainUntilDate=in_days(1))["VersionId"]
    r = s3.get_object_retention(Bucket=locked_bucket, Key="k", VersionId=v)["Retention"]
    assert r["Mode"] == "GOVERNANCE"
    denied(lambda: s3.delete_object(Bucket=locked_bucket, Key="k", VersionId=v))
    # A delete without a version id writes a marker: always allowed.
    marker = s3.delete_object(Bucket=locked_bucket, Key="k")["VersionId"]
    assert s3.get_object(Bucket=locked_bucket, Key="k", VersionId=v)["Body"].read() == b"x"
    s3.delete_object(Bucket=locked_bucket, Key="k", VersionId=marker)
    r = s3.delete_objects(Bucket=locked_bucket, Delete={"Objects": [{"Key": "k", "VersionId": v}]})
    assert [(e["Key"], e["Code"]) for e in r["Errors"]] == [("k", "AccessDenied")]
    s3.delete_object(Bucket=locked_bucket, Key="k", VersionId=v, BypassGovernanceRetention=True)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.head_object(Bucket=locked_bucket, Key="k", VersionId=v)
    assert error_of(e)[0] == 404


def test_compliance_retention_cannot_be_bypassed_or_shortened(s3, locked_bucket):
    until = in_days(2)
    v = s3.put_object(Bucket=locked_bucket, Key="c", Body=b"x", ObjectLockMode="COMPLIANCE", ObjectLockRetainUntilDate=until)["VersionId"]
    denied(lambda: s3.delete_object(Bucket=locked_bucket, Key="c", VersionId=v, BypassGovernanceRetention=True))
    denied(lambda: s3.put_object_retention(Bucket=locked_bucket, Key="c", VersionId=v, Retention={"Mode": "COMPLIANCE", "RetainUntilDate": in_days(1)}))
    denied(lambda: s3.put_object_retention(Bucket=locked_bucket, Key="c", VersionId=v, Retention={"Mode": "GOVERNANCE", "RetainUntilDate": in_days(3)}, BypassGovernanceRetention=True))
    s3.put_object_retention(Bucket=locked_bucket, Key="c", VersionId=v, Retention={"Mode": "COMPLIANCE", "RetainUntilDate": in_days(3)})
    got = s3.get_object_retention(Bucket=locked_bucket, Key="c", VersionId=v)["Retention"]
    assert got["RetainUntilDate"] > until
    # The version id did not change: the retention is the version's own metadata.
    assert s3.head_object(Bucket=locked_bucket, Key="c")["VersionId"] == v


def test_legal_hold(s3, locked_bucket):
    v = s3.put_object(Bucket=locked_bucket, Key="h", Body=b"x", ObjectLockLegalHoldStatus="ON")["VersionId"]
    assert s3.get_object_legal_hold(Bucket=locked_bucket, Key="h", VersionId=v)["LegalHold"]["Status"] == "ON"
    denied(lambda: s3.delete_object(Bucket=locked_bucket, Key="h", VersionId=v, BypassGovernanceRetention=True))
    s3.put_object_legal_hold(Bucket=locked_bucket, Key="h", VersionId=v, LegalHold={"Status": "OFF"})
    assert s3.get_object_legal_hold(Bucket=locked_bucket, Key="h")["LegalHold"]["Status"] == "OFF"
    s3.delete_object(Bucket=locked_bucket, Key="h", VersionId=v)


def test_default_retention_applies_to_new_objects(s3, locked_bucket):
    s3.put_object_lock_configuration(
        Bucket=locked_bucket,
        ObjectLockConfiguration={"ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}}},
    )
    cfg = s3.get_object_lock_configuration(Bucket=locked_bucket)["ObjectLockConfiguration"]
    assert cfg["Rule"]["DefaultRetention"] == {"Mode": "GOVERNANCE", "Days": 1}
    v = s3.put_object(Bucket=locked_bucket, Key="d", Body=b"x")["VersionId"]
    r = s3.get_object_retention(Bucket=locked_bucket, Key="d", VersionId=v)["Retention"]
    assert r["Mode"] == "GOVERNANCE"
    assert in_days(0.9) < r["RetainUntilDate"] < in_days(1.1)
    denied(lambda: s3.delete_object(Bucket=locked_bucket, Key="d", VersionId=v))
    s3.delete_object(Bucket=locked_bucket, Key="d", VersionId=v, BypassGovernanceRetention=True)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.put_object_lock_configuration(
            Bucket=locked_bucket,
            ObjectLockConfiguration={"ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1, "Years": 1}}},
        )
    assert error_of(e)[0] == 400


def test_retention_dates_must_be_in_the_future(s3, locked_bucket):
    denied(
        lambda: s3.put_object(Bucket=locked_bucket, Key="p", Body=b"x", ObjectLockMode="GOVERNANCE", ObjectLockRetainUntilDate=in_days(-1)),
        "InvalidArgument",
        400,
    )


def test_a_multipart_upload_takes_its_lock_and_the_default(s3, locked_bucket):
    until = in_days(1)
    uid = s3.create_multipart_upload(Bucket=locked_bucket, Key="mp", ObjectLockMode="GOVERNANCE", ObjectLockRetainUntilDate=until)["UploadId"]
    part = s3.upload_part(Bucket=locked_bucket, Key="mp", UploadId=uid, PartNumber=1, Body=b"x")
    v = s3.complete_multipart_upload(
        Bucket=locked_bucket, Key="mp", UploadId=uid, MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]}
    )["VersionId"]
    assert s3.get_object_retention(Bucket=locked_bucket, Key="mp", VersionId=v)["Retention"]["Mode"] == "GOVERNANCE"
    denied(lambda: s3.delete_object(Bucket=locked_bucket, Key="mp", VersionId=v))
    s3.delete_object(Bucket=locked_bucket, Key="mp", VersionId=v, BypassGovernanceRetention=True)
