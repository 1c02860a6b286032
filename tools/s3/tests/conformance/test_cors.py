"""CORS: configuration with S3's validation, preflight OPTIONS answered before any signature
check, and the headers of actual cross-origin requests."""

import http.client
import urllib.parse

import botocore
import pytest

from conftest import error_of

RULES = [
    {
        "AllowedOrigins": ["https://app.example.com"],
        "AllowedMethods": ["GET", "PUT"],
        "AllowedHeaders": ["x-amz-*", "content-type"],
        "ExposeHeaders": ["ETag"],
        "MaxAgeSeconds": 600,
    },
    {"AllowedOrigins": ["*"], "AllowedMethods": ["GET"]},
]


def options(stack, path, headers):
    parts = urllib.parse.urlsplit(stack.endpoint)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    conn.request("OPTIONS", path, headers=headers)
    r = conn.getresponse()
    return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()


def test_configuration_round_trip_and_validation(s3, bucket):
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.get_bucket_cors(Bucket=bucket)
    assert error_of(e) == (404, "NoSuchCORSConfiguration")
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": RULES})
    got = s3.get_bucket_cors(Bucket=bucket)["CORSRules"]
    assert got[0]["AllowedOrigins"] == ["https://app.example.com"]
    assert got[0]["MaxAgeSeconds"] == 600
    assert got[1]["AllowedMethods"] == ["GET"]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": [{"AllowedOrigins": ["*"], "AllowedMethods": ["PATCH"]}]})
    assert error_of(e) == (400, "InvalidRequest")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": [{"AllowedOrigins": ["https://*.*.com"], "AllowedMethods": ["GET"]}]})
    assert error_of(e) == (400, "InvalidRequest")
    s3.delete_bucket_cors(Bucket=bucket)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.get_bucket_cors(Bucket=bucket)
    assert error_of(e)[0] == 404


def test_preflight_is_answered_without_a_signature(stack, s3, bucket):
    path = f"/{bucket}/some/key"
    status, _, body = options(stack, path, {"Origin": "https://app.example.com", "Access-Control-Request-Method": "PUT"})
    assert status == 403 and b"CORS is not enabled" in body
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": RULES})
    status, h, _ = options(
        stack,
        path,
        {"Origin": "https://app.example.com", "Access-Control-Request-Method": "PUT", "Access-Control-Request-Headers": "X-Amz-Date, Content-Type"},
    )
    assert status == 200
    assert h["access-control-allow-origin"] == "https://app.example.com"
    assert "PUT" in h["access-control-allow-methods"]
    assert h["access-control-allow-headers"] == "x-amz-date, content-type"
    assert h["access-control-max-age"] == "600"
    assert h["access-control-expose-headers"] == "ETag"
    assert h.get("x-amz-request-id")
    # The wildcard rule: any origin may GET, and gets `*`.
    status, h, _ = options(stack, path, {"Origin": "https://other.example", "Access-Control-Request-Method": "GET"})
    assert status == 200 and h["access-control-allow-origin"] == "*"
    # Not allowed: a method or header no rule names.
    status, _, body = options(stack, path, {"Origin": "https://other.example", "Access-Control-Request-Method": "DELETE"})
    assert status == 403 and b"AccessForbidden" in body
    status, _, _ = options(
        stack, path, {"Origin": "https://app.example.com", "Access-Control-Request-Method": "PUT", "Access-Control-Request-Headers": "authorization"}
    )
    assert status == 403
    status, _, body = options(stack, path, {"Access-Control-Request-Method": "GET"})
    assert status == 400


def test_actual_requests_carry_cors_headers(s3, bucket):
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": RULES})
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    seen = {}

    def add_origin(request, **kwargs):
        request.headers["Origin"] = "https://app.example.com"

    def capture(http_response, **kwargs):
        seen.update({k.lower(): v for k, v in http_response.headers.items()})

    s3.meta.events.register("before-sign.s3.GetObject", add_origin)
    s3.meta.events.register("after-call.s3.GetObject", capture)
    try:
        s3.get_object(Bucket=bucket, Key="k")["Body"].read()
    finally:
        s3.meta.events.unregister("before-sign.s3.GetObject", add_origin)
        s3.meta.events.unregister("after-call.s3.GetObject", capture)
    assert seen["access-control-allow-origin"] == "https://app.example.com"
    assert seen["access-control-expose-headers"] == "ETag"
