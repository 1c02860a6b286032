"""Bucket policies: S3's validation, explicit deny winning, principals, actions and resources
with wildcards, conditions (source IP, prefix), public access block, GetBucketPolicyStatus."""

import json

import botocore
import pytest

from conftest import ALICE, BOB, error_of


def policy(*statements):
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def denied(call, code="AccessDenied", status=403):
    with pytest.raises(botocore.exceptions.ClientError) as e:
        call()
    assert error_of(e) == (status, code)


def test_round_trip_and_validation(s3, bucket):
    denied(lambda: s3.get_bucket_policy(Bucket=bucket), "NoSuchBucketPolicy", 404)
    text = policy({"Sid": "bob", "Effect": "Allow", "Principal": {"AWS": [BOB["canonical_id"]]}, "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{bucket}/*"})
    s3.put_bucket_policy(Bucket=bucket, Policy=text)
    assert json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"]) == json.loads(text)
    for bad in (
        "{not json",
        policy({"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::another-bucket/*"}),
        policy({"Effect": "Perhaps", "Principal": "*", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{bucket}/*"}),
        policy({"Effect": "Allow", "Principal": "*", "Action": "iam:CreateUser", "Resource": f"arn:aws:s3:::{bucket}/*"}),
        policy({"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{bucket}/*", "Condition": {"Whenever": {"aws:SourceIp": "1.2.3.4"}}}),
    ):
        denied(lambda: s3.put_bucket_policy(Bucket=bucket, Policy=bad), "MalformedPolicy", 400)
    s3.delete_bucket_policy(Bucket=bucket)
    denied(lambda: s3.get_bucket_policy(Bucket=bucket), "NoSuchBucketPolicy", 404)


def test_a_policy_grants_anonymous_reads_of_a_prefix(s3, anon, bucket):
    s3.put_object(Bucket=bucket, Key="public/a.txt", Body=b"for everyone")
    s3.put_object(Bucket=bucket, Key="private/b.txt", Body=b"not")
    public = policy({"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{bucket}/public/*"})
    # New buckets block public policies.
    denied(lambda: s3.put_bucket_policy(Bucket=bucket, Policy=public))
    assert s3.get_bucket_policy_status(Bucket=bucket)["PolicyStatus"]["IsPublic"] is False
    s3.delete_public_access_block(Bucket=bucket)
    s3.put_bucket_policy(Bucket=bucket, Policy=public)
    assert s3.get_bucket_policy_status(Bucket=bucket)["PolicyStatus"]["IsPublic"] is True
    assert anon.get_object(Bucket=bucket, Key="public/a.txt")["Body"].read() == b"for everyone"
    denied(lambda: anon.get_object(Bucket=bucket, Key="private/b.txt"))
    denied(lambda: anon.list_objects_v2(Bucket=bucket))
    denied(lambda: anon.put_object(Bucket=bucket, Key="public/c", Body=b"x"))
    # RestrictPublicBuckets: the public policy grants no one but the owner.
    s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration={"RestrictPublicBuckets": True})
    denied(lambda: anon.get_object(Bucket=bucket, Key="public/a.txt"))


def test_a_policy_grants_another_user_with_a_prefix_condition(s3, s3_bob, bucket):
    s3.put_object(Bucket=bucket, Key="shared/x", Body=b"x")
    s3.put_bucket_policy(
        Bucket=bucket,
        Policy=policy(
            {
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{BOB['canonical_id']}:root"},
                "Action": "s3:ListBucket",
                "Resource": f"arn:aws:s3:::{bucket}",
                "Condition": {"StringLike": {"s3:prefix": ["shared/*"]}},
            },
            {"Effect": "Allow", "Principal": {"AWS": BOB["canonical_id"]}, "Action": ["s3:GetObject", "s3:PutObject"], "Resource": f"arn:aws:s3:::{bucket}/shared/*"},
        ),
    )
    assert [o["Key"] for o in s3_bob.list_objects_v2(Bucket=bucket, Prefix="shared/")["Contents"]] == ["shared/x"]
    denied(lambda: s3_bob.list_objects_v2(Bucket=bucket))
    s3_bob.put_object(Bucket=bucket, Key="shared/from-bob", Body=b"bob")
    assert s3_bob.get_object(Bucket=bucket, Key="shared/from-bob")["Body"].read() == b"bob"
    denied(lambda: s3_bob.put_object(Bucket=bucket, Key="elsewhere", Body=b"x"))
    # The bucket owner owns what bob wrote (ACLs are disabled in a new bucket).
    assert s3.get_object(Bucket=bucket, Key="shared/from-bob")["Body"].read() == b"bob"


def test_explicit_deny_wins_even_for_the_owner(s3, bucket):
    s3.put_object(Bucket=bucket, Key="keep/a", Body=b"x")
    s3.put_object(Bucket=bucket, Key="tmp/b", Body=b"x")
    s3.put_bucket_policy(
        Bucket=bucket,
        Policy=policy({"Effect": "Deny", "Principal": "*", "Action": "s3:DeleteObject", "Resource": f"arn:aws:s3:::{bucket}/keep/*"}),
    )
    denied(lambda: s3.delete_object(Bucket=bucket, Key="keep/a"))
    r = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "keep/a"}, {"Key": "tmp/b"}]})
    assert [d["Key"] for d in r["Deleted"]] == ["tmp/b"]
    assert [(e["Key"], e["Code"]) for e in r["Errors"]] == [("keep/a", "AccessDenied")]
    # The owner can always repair its policy.
    s3.delete_bucket_policy(Bucket=bucket)
    s3.delete_object(Bucket=bucket, Key="keep/a")


def test_source_ip_conditions(s3, anon, bucket):
    s3.delete_public_access_block(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    s3.put_bucket_policy(
        Bucket=bucket,
        Policy=policy({"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{bucket}/*", "Condition": {"IpAddress": {"aws:SourceIp": "127.0.0.0/8"}}}),
    )
    assert anon.get_object(Bucket=bucket, Key="k")["Body"].read() == b"x"
    s3.put_bucket_policy(
        Bucket=bucket,
        Policy=policy({"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{bucket}/*", "Condition": {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}}),
    )
    denied(lambda: anon.get_object(Bucket=bucket, Key="k"))


def test_a_policy_can_deny_anonymous_and_unsigned_payloads(s3, s3_bob, bucket):
    s3.put_bucket_policy(
        Bucket=bucket,
        Policy=policy({"Effect": "Allow", "Principal": {"AWS": BOB["canonical_id"]}, "Action": "s3:*", "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"]},
                      {"Effect": "Deny", "Principal": "*", "Action": "s3:PutObject", "Resource": f"arn:aws:s3:::{bucket}/*", "Condition": {"StringEquals": {"aws:username": "bob"}, "Null": {"s3:x-amz-acl": "true"}}}),
    )
    denied(lambda: s3_bob.put_object(Bucket=bucket, Key="k", Body=b"x"))
    s3_bob.put_object(Bucket=bucket, Key="k", Body=b"x", ACL="bucket-owner-full-control")
    assert s3_bob.list_objects_v2(Bucket=bucket)["KeyCount"] == 1
    assert ALICE["canonical_id"] != BOB["canonical_id"]
