"""Access control: canned ACLs and grants (by canonical id, email, group URI) on buckets and
objects, enforced between real users and for anonymous callers; object ownership controls;
public access block; GetBucketPolicyStatus; bucket tagging."""

import botocore
import pytest

from conftest import ALICE, BOB, empty_and_delete, error_of, unique_name

ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"


@pytest.fixture
def open_bucket(s3):
    """A bucket of alice's with ACLs enabled (ObjectWriter) and no public access block."""
    name = unique_name("acl")
    s3.create_bucket(Bucket=name, ObjectOwnership="ObjectWriter")
    s3.delete_public_access_block(Bucket=name)
    yield name
    empty_and_delete(s3, name)


def denied(call, code="AccessDenied", status=403):
    with pytest.raises(botocore.exceptions.ClientError) as e:
        call()
    assert error_of(e) == (status, code)


def test_a_new_bucket_has_aws_defaults(s3, bucket):
    r = s3.get_bucket_ownership_controls(Bucket=bucket)
    assert r["OwnershipControls"]["Rules"] == [{"ObjectOwnership": "BucketOwnerEnforced"}]
    pab = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    assert pab == {"BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True, "RestrictPublicBuckets": True}
    acl = s3.get_bucket_acl(Bucket=bucket)
    assert acl["Owner"]["ID"] == ALICE["canonical_id"]
    assert acl["Grants"] == [
        {"Grantee": {"ID": ALICE["canonical_id"], "DisplayName": "alice", "Type": "CanonicalUser"}, "Permission": "FULL_CONTROL"}
    ]
    denied(lambda: s3.put_bucket_acl(Bucket=bucket, ACL="public-read"), "AccessControlListNotSupported", 400)
    denied(lambda: s3.put_object(Bucket=bucket, Key="k", Body=b"x", ACL="public-read"), "AccessControlListNotSupported", 400)
    s3.put_object(Bucket=bucket, Key="k", Body=b"x", ACL="bucket-owner-full-control")
    assert s3.get_bucket_policy_status(Bucket=bucket)["PolicyStatus"]["IsPublic"] is False


def test_creating_an_enforced_bucket_with_a_public_acl_is_refused(s3):
    denied(lambda: s3.create_bucket(Bucket=unique_name(), ACL="public-read"), "InvalidBucketAclWithObjectOwnership", 400)


def test_public_read_bucket_lets_anyone_list_but_not_write(s3, anon, s3_bob, open_bucket):
    s3.put_object(Bucket=open_bucket, Key="k", Body=b"x")
    denied(lambda: anon.list_objects_v2(Bucket=open_bucket))
    s3.put_bucket_acl(Bucket=open_bucket, ACL="public-read")
    assert [o["Key"] for o in anon.list_objects_v2(Bucket=open_bucket)["Contents"]] == ["k"]
    assert [o["Key"] for o in s3_bob.list_objects_v2(Bucket=open_bucket)["Contents"]] == ["k"]
    # Listing is allowed; the object itself is still private.
    denied(lambda: anon.get_object(Bucket=open_bucket, Key="k"))
    denied(lambda: anon.put_object(Bucket=open_bucket, Key="anon", Body=b"x"))
    denied(lambda: s3_bob.put_object(Bucket=open_bucket, Key="bob", Body=b"x"))
    denied(lambda: s3_bob.put_bucket_acl(Bucket=open_bucket, ACL="private"))
    denied(lambda: s3_bob.delete_bucket(Bucket=open_bucket))
    # The policy status reads the bucket policy alone: a public ACL does not make it public.
    assert s3.get_bucket_policy_status(Bucket=open_bucket)["PolicyStatus"]["IsPublic"] is False
    grants = s3.get_bucket_acl(Bucket=open_bucket)["Grants"]
    assert {"Grantee": {"Type": "Group", "URI": ALL_USERS}, "Permission": "READ"} in grants


def test_a_missing_key_is_access_denied_to_whoever_cannot_list(s3, anon, open_bucket):
    denied(lambda: anon.get_object(Bucket=open_bucket, Key="absent"))
    s3.put_bucket_acl(Bucket=open_bucket, ACL="public-read")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        anon.get_object(Bucket=open_bucket, Key="absent")
    assert error_of(e) == (404, "NoSuchKey")


def test_object_acls_grant_reads(s3, anon, s3_bob, open_bucket):
    s3.put_object(Bucket=open_bucket, Key="public", Body=b"for all", ACL="public-read")
    s3.put_object(Bucket=open_bucket, Key="private", Body=b"mine")
    assert anon.get_object(Bucket=open_bucket, Key="public")["Body"].read() == b"for all"
    assert anon.head_object(Bucket=open_bucket, Key="public")["ContentLength"] == 7
    denied(lambda: anon.get_object(Bucket=open_bucket, Key="private"))
    denied(lambda: s3_bob.get_object(Bucket=open_bucket, Key="private"))
    s3.put_object_acl(Bucket=open_bucket, Key="private", ACL="authenticated-read")
    assert s3_bob.get_object(Bucket=open_bucket, Key="private")["Body"].read() == b"mine"
    denied(lambda: anon.get_object(Bucket=open_bucket, Key="private"))
    acl = s3.get_object_acl(Bucket=open_bucket, Key="private")
    assert acl["Owner"]["ID"] == ALICE["canonical_id"]
    assert {"Grantee": {"Type": "Group", "URI": "http://acs.amazonaws.com/groups/global/AuthenticatedUsers"}, "Permission": "READ"} in acl["Grants"]
    # The bytes and metadata did not change.
    assert s3.get_object(Bucket=open_bucket, Key="private")["Body"].read() == b"mine"
    denied(lambda: s3_bob.get_object_acl(Bucket=open_bucket, Key="private"))
    denied(lambda: s3_bob.put_object_acl(Bucket=open_bucket, Key="private", ACL="public-read"))


def test_grants_by_email_id_and_uri(s3, s3_bob, anon, open_bucket):
    s3.put_bucket_acl(
        Bucket=open_bucket,
        GrantRead=f'emailAddress="{BOB["email"]}"',
        GrantWrite=f'id="{BOB["canonical_id"]}"',
        GrantReadACP=f'uri="{ALL_USERS}"',
    )
    s3_bob.put_object(Bucket=open_bucket, Key="by-bob", Body=b"bob wrote")
    assert "by-bob" in [o["Key"] for o in s3_bob.list_objects_v2(Bucket=open_bucket)["Contents"]]
    grants = anon.get_bucket_acl(Bucket=open_bucket)["Grants"]
    bob = {"ID": BOB["canonical_id"], "DisplayName": "bob", "Type": "CanonicalUser"}
    assert {"Grantee": bob, "Permission": "READ"} in grants
    assert {"Grantee": bob, "Permission": "WRITE"} in grants
    denied(lambda: anon.list_objects_v2(Bucket=open_bucket))
    denied(lambda: s3.put_bucket_acl(Bucket=open_bucket, GrantRead='emailAddress="nobody@example.com"'), "UnresolvableGrantByEmailAddress", 400)


def test_an_object_written_by_another_user_is_theirs_under_object_writer(s3, s3_bob, open_bucket):
    s3.put_bucket_acl(Bucket=open_bucket, GrantWrite=f'id="{BOB["canonical_id"]}"')
    s3_bob.put_object(Bucket=open_bucket, Key="bobs", Body=b"x")
    denied(lambda: s3.get_object(Bucket=open_bucket, Key="bobs"))
    assert s3_bob.get_object_acl(Bucket=open_bucket, Key="bobs")["Owner"]["ID"] == BOB["canonical_id"]
    s3_bob.put_object(Bucket=open_bucket, Key="shared", Body=b"y", ACL="bucket-owner-full-control")
    assert s3.get_object(Bucket=open_bucket, Key="shared")["Body"].read() == b"y"
    # The bucket owner may delete whatever is in its bucket.
    s3.delete_object(Bucket=open_bucket, Key="bobs")


def test_bucket_owner_preferred_takes_objects_given_full_control(s3, s3_bob, open_bucket):
    s3.put_bucket_ownership_controls(
        Bucket=open_bucket, OwnershipControls={"Rules": [{"ObjectOwnership": "BucketOwnerPreferred"}]}
    )
    s3.put_bucket_acl(Bucket=open_bucket, GrantWrite=f'id="{BOB["canonical_id"]}"')
    s3_bob.put_object(Bucket=open_bucket, Key="given", Body=b"x", ACL="bucket-owner-full-control")
    assert s3.get_object_acl(Bucket=open_bucket, Key="given")["Owner"]["ID"] == ALICE["canonical_id"]


def test_public_read_write_lets_anyone_write(s3, anon, open_bucket):
    s3.put_bucket_acl(Bucket=open_bucket, ACL="public-read-write")
    anon.put_object(Bucket=open_bucket, Key="from-anon", Body=b"anon")
    assert s3.list_objects_v2(Bucket=open_bucket)["Contents"][0]["Key"] == "from-anon"
    anon.delete_object(Bucket=open_bucket, Key="from-anon")


def test_public_access_block(s3, anon, open_bucket):
    s3.put_object(Bucket=open_bucket, Key="k", Body=b"x", ACL="public-read")
    s3.put_public_access_block(Bucket=open_bucket, PublicAccessBlockConfiguration={"IgnorePublicAcls": True})
    denied(lambda: anon.get_object(Bucket=open_bucket, Key="k"))
    s3.put_public_access_block(Bucket=open_bucket, PublicAccessBlockConfiguration={"BlockPublicAcls": True})
    assert anon.get_object(Bucket=open_bucket, Key="k")["Body"].read() == b"x"
    denied(lambda: s3.put_object(Bucket=open_bucket, Key="k2", Body=b"x", ACL="public-read"))
    denied(lambda: s3.put_bucket_acl(Bucket=open_bucket, ACL="public-read"))
    s3.delete_public_access_block(Bucket=open_bucket)
    denied(lambda: s3.get_public_access_block(Bucket=open_bucket), "NoSuchPublicAccessBlockConfiguration", 404)


def test_ownership_controls(s3, open_bucket):
    s3.put_bucket_acl(Bucket=open_bucket, ACL="public-read")
    denied(
        lambda: s3.put_bucket_ownership_controls(Bucket=open_bucket, OwnershipControls={"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}),
        "InvalidBucketAclWithObjectOwnership",
        400,
    )
    s3.put_bucket_acl(Bucket=open_bucket, ACL="private")
    s3.put_bucket_ownership_controls(Bucket=open_bucket, OwnershipControls={"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]})
    assert s3.get_bucket_ownership_controls(Bucket=open_bucket)["OwnershipControls"]["Rules"][0]["ObjectOwnership"] == "BucketOwnerEnforced"
    s3.delete_bucket_ownership_controls(Bucket=open_bucket)
    denied(lambda: s3.get_bucket_ownership_controls(Bucket=open_bucket), "OwnershipControlsNotFoundError", 404)


def test_canned_acl_and_grant_headers_together_are_refused(s3, open_bucket):
    denied(
        lambda: s3.put_object(Bucket=open_bucket, Key="k", Body=b"x", ACL="public-read", GrantRead=f'id="{BOB["canonical_id"]}"'),
        "InvalidRequest",
        400,
    )


def test_bucket_tagging(s3, s3_bob, bucket):
    denied(lambda: s3.get_bucket_tagging(Bucket=bucket), "NoSuchTagSet", 404)
    tags = [{"Key": "team", "Value": "storage"}, {"Key": "env", "Value": "test"}]
    s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": tags})
    assert s3.get_bucket_tagging(Bucket=bucket)["TagSet"] == tags
    denied(lambda: s3_bob.get_bucket_tagging(Bucket=bucket))
    denied(lambda: s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": [{"Key": "a", "Value": "1"}, {"Key": "a", "Value": "2"}]}), "InvalidTag", 400)
    denied(lambda: s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": [{"Key": "k" * 129, "Value": "1"}]}), "InvalidTag", 400)
    s3.delete_bucket_tagging(Bucket=bucket)
    denied(lambda: s3.get_bucket_tagging(Bucket=bucket), "NoSuchTagSet", 404)


def test_a_copy_belongs_to_whoever_made_it_and_starts_private(s3, s3_bob, anon, open_bucket):
    s3.put_object(Bucket=open_bucket, Key="src", Body=b"shared", ACL="public-read")
    s3.put_bucket_acl(Bucket=open_bucket, GrantWrite=f'id="{BOB["canonical_id"]}"')
    s3_bob.copy_object(Bucket=open_bucket, Key="bobs-copy", CopySource={"Bucket": open_bucket, "Key": "src"})
    assert s3_bob.get_object_acl(Bucket=open_bucket, Key="bobs-copy")["Owner"]["ID"] == BOB["canonical_id"]
    denied(lambda: anon.get_object(Bucket=open_bucket, Key="bobs-copy"))
    assert s3_bob.get_object(Bucket=open_bucket, Key="bobs-copy")["Body"].read() == b"shared"
    s3.copy_object(Bucket=open_bucket, Key="public-copy", CopySource={"Bucket": open_bucket, "Key": "src"}, ACL="public-read")
    assert anon.get_object(Bucket=open_bucket, Key="public-copy")["Body"].read() == b"shared"
    # A private source cannot be copied by someone who may not read it.
    s3.put_object(Bucket=open_bucket, Key="secret", Body=b"no")
    denied(lambda: s3_bob.copy_object(Bucket=open_bucket, Key="stolen", CopySource={"Bucket": open_bucket, "Key": "secret"}))
