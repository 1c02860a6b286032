"""Listing: ListObjects v1 and v2 with prefixes, delimiters, markers, tokens, encoding,
owners and S3's truncation semantics."""

import urllib.parse

import botocore
import pytest

from conftest import error_of

KEYS = ["a/1", "a/2", "a/b/3", "b/1", "c", "d/x/y", "e"]


@pytest.fixture
def filled(s3, bucket):
    for k in KEYS:
        s3.put_object(Bucket=bucket, Key=k, Body=k.encode())
    return bucket


def test_v2_lists_everything_in_key_order(s3, filled):
    r = s3.list_objects_v2(Bucket=filled)
    assert [o["Key"] for o in r["Contents"]] == KEYS
    assert r["KeyCount"] == len(KEYS)
    assert r["IsTruncated"] is False
    assert "NextContinuationToken" not in r
    assert all(o["Size"] == len(o["Key"]) for o in r["Contents"])
    assert all(o["StorageClass"] == "STANDARD" for o in r["Contents"])
    assert all("Owner" not in o for o in r["Contents"])


def test_v2_delimiter_rolls_keys_into_common_prefixes(s3, filled):
    r = s3.list_objects_v2(Bucket=filled, Delimiter="/")
    assert [o["Key"] for o in r["Contents"]] == ["c", "e"]
    assert [p["Prefix"] for p in r["CommonPrefixes"]] == ["a/", "b/", "d/"]
    assert r["KeyCount"] == 5
    r = s3.list_objects_v2(Bucket=filled, Delimiter="/", Prefix="a/")
    assert [o["Key"] for o in r["Contents"]] == ["a/1", "a/2"]
    assert [p["Prefix"] for p in r["CommonPrefixes"]] == ["a/b/"]
    assert r["Prefix"] == "a/"


def test_v2_pages_with_continuation_tokens(s3, filled):
    seen = []
    token = None
    pages = 0
    while True:
        kwargs = {"Bucket": filled, "MaxKeys": 2, "Delimiter": "/"}
        if token:
            kwargs["ContinuationToken"] = token
        r = s3.list_objects_v2(**kwargs)
        pages += 1
        seen += [o["Key"] for o in r.get("Contents", [])] + [p["Prefix"] for p in r.get("CommonPrefixes", [])]
        assert r["KeyCount"] <= 2
        if not r["IsTruncated"]:
            break
        token = r["NextContinuationToken"]
        assert pages < 10
    assert sorted(seen) == ["a/", "b/", "c", "d/", "e"]
    assert pages == 3


def test_v2_start_after(s3, filled):
    r = s3.list_objects_v2(Bucket=filled, StartAfter="b/1")
    assert [o["Key"] for o in r["Contents"]] == ["c", "d/x/y", "e"]
    assert r["StartAfter"] == "b/1"


def test_max_keys_zero_returns_nothing_and_is_not_truncated(s3, filled):
    r = s3.list_objects_v2(Bucket=filled, MaxKeys=0)
    assert r.get("Contents", []) == []
    assert r["IsTruncated"] is False


def test_v2_fetch_owner(s3, filled):
    r = s3.list_objects_v2(Bucket=filled, FetchOwner=True, MaxKeys=1)
    assert r["Contents"][0]["Owner"] == {"ID": "a1" * 32, "DisplayName": "alice"}


def test_v1_marker_and_next_marker(s3, filled):
    r = s3.list_objects(Bucket=filled, MaxKeys=3)
    assert [o["Key"] for o in r["Contents"]] == KEYS[:3]
    assert r["IsTruncated"] is True
    assert "NextMarker" not in r
    r = s3.list_objects(Bucket=filled, Marker="a/b/3")
    assert [o["Key"] for o in r["Contents"]] == KEYS[3:]
    assert r["IsTruncated"] is False
    assert r["Contents"][0]["Owner"]["ID"] == "a1" * 32


def test_v1_delimiter_pages_by_next_marker(s3, filled):
    r = s3.list_objects(Bucket=filled, Delimiter="/", MaxKeys=2)
    assert [p["Prefix"] for p in r["CommonPrefixes"]] == ["a/", "b/"]
    assert r["IsTruncated"] is True
    assert r["NextMarker"] == "b/"
    r = s3.list_objects(Bucket=filled, Delimiter="/", MaxKeys=2, Marker=r["NextMarker"])
    assert [o["Key"] for o in r.get("Contents", [])] == ["c"]
    assert [p["Prefix"] for p in r["CommonPrefixes"]] == ["d/"]
    r = s3.list_objects(Bucket=filled, Delimiter="/", MaxKeys=2, Marker=r["NextMarker"])
    assert [o["Key"] for o in r["Contents"]] == ["e"]
    assert r["IsTruncated"] is False


def test_encoding_type_url(s3, bucket):
    key = "sp ace/ünï+code"
    s3.put_object(Bucket=bucket, Key=key, Body=b"x")
    raw = s3.list_objects_v2(Bucket=bucket, EncodingType="url")
    # boto3 decodes a listing only when it asked for the encoding itself: here the keys arrive
    # as the gateway encoded them.
    assert [o["Key"] for o in raw["Contents"]] == [urllib.parse.quote(key)]
    seen = {}

    def capture(http_response, **kwargs):
        seen["body"] = http_response.content

    s3.meta.events.register("after-call.s3.ListObjectsV2", capture)
    try:
        s3.list_objects_v2(Bucket=bucket, EncodingType="url")
    finally:
        s3.meta.events.unregister("after-call.s3.ListObjectsV2", capture)
    assert f"<Key>{urllib.parse.quote(key)}</Key>".encode() in seen["body"]


def test_negative_max_keys_is_invalid(s3, bucket):
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.list_objects_v2(Bucket=bucket, MaxKeys=-1)
    assert error_of(e)[0] == 400


def test_a_bad_continuation_token_is_invalid_argument(s3, bucket):
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.list_objects_v2(Bucket=bucket, ContinuationToken="!!!not a token!!!")
    assert error_of(e) == (400, "InvalidArgument")


def test_listing_pages_past_a_thousand_keys(s3, bucket):
    keys = [f"many/{i:05d}" for i in range(1203)]
    for start in range(0, len(keys), 100):
        for k in keys[start : start + 100]:
            s3.put_object(Bucket=bucket, Key=k, Body=b"")
    first = s3.list_objects_v2(Bucket=bucket)
    assert first["KeyCount"] == 1000
    assert first["IsTruncated"] is True
    rest = s3.list_objects_v2(Bucket=bucket, ContinuationToken=first["NextContinuationToken"])
    assert rest["KeyCount"] == 203
    assert [o["Key"] for o in first["Contents"] + rest["Contents"]] == keys
