"""Server-side encryption: SSE-C (the client's key), SSE-S3 and SSE-KMS (the gateway's key file),
over ranges, multipart uploads and copies, and bucket default encryption; the bytes at rest in the
node are ciphertext. Errors as AWS documents them for SSE-C.
"""

import base64
import hashlib
import mmap
import os
from pathlib import Path

import botocore
import pytest

from conftest import error_of, unique_name, empty_and_delete

MIB = 1024 * 1024
CHUNK = 64 * 1024


def customer_key(seed):
    key = hashlib.sha256(seed.encode()).digest()
    return {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": key}


def source_key(seed):
    key = hashlib.sha256(seed.encode()).digest()
    return {"CopySourceSSECustomerAlgorithm": "AES256", "CopySourceSSECustomerKey": key}


def md5_b64(b):
    return base64.b64encode(hashlib.md5(b).digest()).decode()


KEY_A = customer_key("key-a")
KEY_B = customer_key("key-b")


def test_sse_c_round_trip_and_the_key_is_needed_again(s3, bucket):
    data = os.urandom(3 * CHUNK + 123)
    put = s3.put_object(Bucket=bucket, Key="c", Body=data, **KEY_A)
    assert put["SSECustomerAlgorithm"] == "AES256"
    assert put["SSECustomerKeyMD5"] == md5_b64(KEY_A["SSECustomerKey"])
    assert "ServerSideEncryption" not in put
    # SSE-C's ETag is not the MD5 of the plaintext (AWS: it is not, for SSE-C and SSE-KMS).
    assert put["ETag"].strip('"') != hashlib.md5(data).hexdigest()

    got = s3.get_object(Bucket=bucket, Key="c", **KEY_A)
    assert got["Body"].read() == data
    assert got["ContentLength"] == len(data)
    assert got["SSECustomerKeyMD5"] == put["SSECustomerKeyMD5"]
    assert got["ETag"] == put["ETag"]
    head = s3.head_object(Bucket=bucket, Key="c", **KEY_A)
    assert head["ContentLength"] == len(data)
    assert head["SSECustomerAlgorithm"] == "AES256"

    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.get_object(Bucket=bucket, Key="c")
    assert error_of(e) == (400, "InvalidRequest")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.get_object(Bucket=bucket, Key="c", **KEY_B)
    assert error_of(e) == (403, "AccessDenied")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.head_object(Bucket=bucket, Key="c")
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.head_object(Bucket=bucket, Key="c", **KEY_B)
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403

    # Listings show the plaintext size.
    listed = s3.list_objects_v2(Bucket=bucket)["Contents"]
    assert [(o["Key"], o["Size"]) for o in listed] == [("c", len(data))]
    attrs = s3.get_object_attributes(Bucket=bucket, Key="c", ObjectAttributes=["ObjectSize"])
    assert attrs["ObjectSize"] == len(data)

    # SSE-C headers on an object stored without SSE-C are refused.
    s3.put_object(Bucket=bucket, Key="plain", Body=b"plain")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.get_object(Bucket=bucket, Key="plain", **KEY_A)
    assert error_of(e) == (400, "InvalidRequest")


def test_sse_c_headers_are_checked(s3, bucket):
    key = KEY_A["SSECustomerKey"]
    good = base64.b64encode(key).decode()
    cases = [
        # Wrong MD5 of the key.
        ({"SSECustomerAlgorithm": "AES256", "SSECustomerKey": good, "SSECustomerKeyMD5": md5_b64(b"other")},
         "InvalidArgument"),
        # A key that is not 256 bits.
        ({"SSECustomerAlgorithm": "AES256", "SSECustomerKey": base64.b64encode(b"short").decode(),
          "SSECustomerKeyMD5": md5_b64(b"short")}, "InvalidArgument"),
        # An algorithm S3 does not have.
        ({"SSECustomerAlgorithm": "AES512", "SSECustomerKey": good, "SSECustomerKeyMD5": md5_b64(key)},
         "InvalidEncryptionAlgorithmError"),
        # A key and its MD5 but no algorithm.
        ({"SSECustomerKey": good, "SSECustomerKeyMD5": md5_b64(key)}, "InvalidArgument"),
    ]
    for headers, code in cases:
        with pytest.raises(botocore.exceptions.ClientError) as e:
            s3.put_object(Bucket=bucket, Key="k", Body=b"data", **headers)
        assert error_of(e) == (400, code), headers
    # SSE-C and SSE-S3 at once.
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.put_object(Bucket=bucket, Key="k", Body=b"data", ServerSideEncryption="AES256", **KEY_A)
    assert error_of(e) == (400, "InvalidArgument")
    # Nothing was stored by any of them.
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket)


def test_ranges_of_an_encrypted_object_cross_chunk_boundaries(s3, bucket):
    data = os.urandom(5 * CHUNK + 777)
    s3.put_object(Bucket=bucket, Key="r", Body=data, **KEY_A)
    n = len(data)
    for spec, first, last in [
        ("bytes=0-0", 0, 0),
        (f"bytes={CHUNK - 1}-{CHUNK}", CHUNK - 1, CHUNK),
        (f"bytes={CHUNK}-{3 * CHUNK + 5}", CHUNK, 3 * CHUNK + 5),
        ("bytes=-100", n - 100, n - 1),
        (f"bytes={n - 10}-", n - 10, n - 1),
        (f"bytes=5-{n + 1000}", 5, n - 1),
    ]:
        got = s3.get_object(Bucket=bucket, Key="r", Range=spec, **KEY_A)
        assert got["ResponseMetadata"]["HTTPStatusCode"] == 206, spec
        assert got["ContentRange"] == f"bytes {first}-{last}/{n}", spec
        assert got["Body"].read() == data[first:last + 1], spec
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.get_object(Bucket=bucket, Key="r", Range=f"bytes={n}-", **KEY_A)
    assert error_of(e)[0] == 416
    # An empty encrypted object.
    s3.put_object(Bucket=bucket, Key="empty", Body=b"", **KEY_A)
    got = s3.get_object(Bucket=bucket, Key="empty", **KEY_A)
    assert got["Body"].read() == b"" and got["ContentLength"] == 0


def test_sse_s3_and_sse_kms_use_the_gateway_keys(s3, bucket):
    data = os.urandom(2 * CHUNK + 9)
    put = s3.put_object(Bucket=bucket, Key="s3", Body=data, ServerSideEncryption="AES256")
    assert put["ServerSideEncryption"] == "AES256"
    # SSE-S3 keeps the MD5 ETag.
    assert put["ETag"].strip('"') == hashlib.md5(data).hexdigest()
    got = s3.get_object(Bucket=bucket, Key="s3")
    assert got["Body"].read() == data and got["ServerSideEncryption"] == "AES256"
    assert s3.get_object(Bucket=bucket, Key="s3", Range="bytes=100-199")["Body"].read() == data[100:200]

    put = s3.put_object(Bucket=bucket, Key="kms", Body=data, ServerSideEncryption="aws:kms", SSEKMSKeyId="app-key")
    assert (put["ServerSideEncryption"], put["SSEKMSKeyId"]) == ("aws:kms", "app-key")
    assert put["ETag"].strip('"') != hashlib.md5(data).hexdigest()
    head = s3.head_object(Bucket=bucket, Key="kms")
    assert (head["ServerSideEncryption"], head["SSEKMSKeyId"], head["ContentLength"]) == ("aws:kms", "app-key", len(data))
    assert s3.get_object(Bucket=bucket, Key="kms")["Body"].read() == data
    # Without a key id: the key file's default KMS key.
    put = s3.put_object(Bucket=bucket, Key="kms-default", Body=b"x", ServerSideEncryption="aws:kms")
    assert put["SSEKMSKeyId"] == "kms-default"
    # A key id the key file lacks.
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.put_object(Bucket=bucket, Key="nokey", Body=b"x", ServerSideEncryption="aws:kms", SSEKMSKeyId="nope")
    assert error_of(e) == (400, "KMS.NotFoundException")
    # SSE-C headers on an SSE-S3 object are refused.
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.get_object(Bucket=bucket, Key="s3", **KEY_A)
    assert error_of(e) == (400, "InvalidRequest")


def test_multipart_upload_with_sse_c(s3, bucket):
    parts_data = [os.urandom(5 * MIB + 3), os.urandom(5 * MIB + CHUNK * 3 + 7), os.urandom(1000)]
    up = s3.create_multipart_upload(Bucket=bucket, Key="mp", **KEY_A)
    assert up["SSECustomerKeyMD5"] == md5_b64(KEY_A["SSECustomerKey"])
    uid = up["UploadId"]
    # A part without the key, or with another key, is refused and stores nothing.
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.upload_part(Bucket=bucket, Key="mp", UploadId=uid, PartNumber=1, Body=parts_data[0])
    assert error_of(e)[0] == 400
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.upload_part(Bucket=bucket, Key="mp", UploadId=uid, PartNumber=1, Body=parts_data[0], **KEY_B)
    assert error_of(e)[0] == 400
    assert s3.list_parts(Bucket=bucket, Key="mp", UploadId=uid).get("Parts", []) == []
    etags = []
    for i, d in enumerate(parts_data, start=1):
        r = s3.upload_part(Bucket=bucket, Key="mp", UploadId=uid, PartNumber=i, Body=d, **KEY_A)
        assert r["SSECustomerAlgorithm"] == "AES256"
        etags.append(r["ETag"])
    listed = s3.list_parts(Bucket=bucket, Key="mp", UploadId=uid)["Parts"]
    assert [p["Size"] for p in listed] == [len(d) for d in parts_data]
    s3.complete_multipart_upload(
        Bucket=bucket, Key="mp", UploadId=uid,
        MultipartUpload={"Parts": [{"PartNumber": i + 1, "ETag": e} for i, e in enumerate(etags)]},
    )
    data = b"".join(parts_data)
    got = s3.get_object(Bucket=bucket, Key="mp", **KEY_A)
    assert got["ContentLength"] == len(data)
    assert got["Body"].read() == data
    # A range across the first part boundary, and parts by number.
    a, b = len(parts_data[0]) - 5, len(parts_data[0]) + 70_000
    got = s3.get_object(Bucket=bucket, Key="mp", Range=f"bytes={a}-{b}", **KEY_A)
    assert got["Body"].read() == data[a:b + 1]
    got = s3.get_object(Bucket=bucket, Key="mp", PartNumber=2, **KEY_A)
    assert got["PartsCount"] == 3 and got["Body"].read() == parts_data[1]
    head = s3.head_object(Bucket=bucket, Key="mp", PartNumber=3, **KEY_A)
    assert head["ContentLength"] == len(parts_data[2])
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.get_object(Bucket=bucket, Key="mp")
    assert error_of(e) == (400, "InvalidRequest")
    assert s3.list_objects_v2(Bucket=bucket)["Contents"][0]["Size"] == len(data)


def test_multipart_with_sse_kms_and_an_encrypted_part_copy(s3, bucket):
    source = os.urandom(6 * MIB)
    s3.put_object(Bucket=bucket, Key="src", Body=source, **KEY_B)
    up = s3.create_multipart_upload(Bucket=bucket, Key="mp", ServerSideEncryption="aws:kms", SSEKMSKeyId="app-key")
    assert up["ServerSideEncryption"] == "aws:kms"
    uid = up["UploadId"]
    first = s3.upload_part_copy(
        Bucket=bucket, Key="mp", UploadId=uid, PartNumber=1, CopySource={"Bucket": bucket, "Key": "src"},
        CopySourceRange=f"bytes=0-{5 * MIB}", **source_key("key-b"),
    )
    tail = os.urandom(12345)
    second = s3.upload_part(Bucket=bucket, Key="mp", UploadId=uid, PartNumber=2, Body=tail)
    done = s3.complete_multipart_upload(
        Bucket=bucket, Key="mp", UploadId=uid,
        MultipartUpload={"Parts": [
            {"PartNumber": 1, "ETag": first["CopyPartResult"]["ETag"]},
            {"PartNumber": 2, "ETag": second["ETag"]},
        ]},
    )
    assert done["ServerSideEncryption"] == "aws:kms"
    want = source[:5 * MIB + 1] + tail
    got = s3.get_object(Bucket=bucket, Key="mp")
    assert (got["ServerSideEncryption"], got["SSEKMSKeyId"]) == ("aws:kms", "app-key")
    assert got["Body"].read() == want
    # A part copy from an SSE-C source without its key is refused.
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.upload_part_copy(
            Bucket=bucket, Key="mp2", UploadId=s3.create_multipart_upload(Bucket=bucket, Key="mp2")["UploadId"],
            PartNumber=1, CopySource={"Bucket": bucket, "Key": "src"},
        )
    assert error_of(e) == (400, "InvalidRequest")


def test_copies_into_out_of_and_between_encryptions(s3, bucket):
    data = os.urandom(CHUNK * 2 + 5)
    s3.put_object(Bucket=bucket, Key="c", Body=data, **KEY_A)
    # SSE-C to SSE-S3 in the same bucket (the data key is wrapped again, the bytes stay).
    r = s3.copy_object(Bucket=bucket, Key="s3", CopySource={"Bucket": bucket, "Key": "c"},
                       ServerSideEncryption="AES256", **source_key("key-a"))
    assert r["ServerSideEncryption"] == "AES256"
    assert s3.get_object(Bucket=bucket, Key="s3")["Body"].read() == data
    # Key rotation in place: the same object under another customer key.
    s3.copy_object(Bucket=bucket, Key="c", CopySource={"Bucket": bucket, "Key": "c"}, **source_key("key-a"), **KEY_B)
    assert s3.get_object(Bucket=bucket, Key="c", **KEY_B)["Body"].read() == data
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.get_object(Bucket=bucket, Key="c", **KEY_A)
    assert error_of(e) == (403, "AccessDenied")
    # Without the source's key: refused.
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.copy_object(Bucket=bucket, Key="x", CopySource={"Bucket": bucket, "Key": "c"})
    assert error_of(e) == (400, "InvalidRequest")
    # Out of encryption, into another bucket: the copy is plaintext.
    other = unique_name()
    s3.create_bucket(Bucket=other)
    try:
        r = s3.copy_object(Bucket=other, Key="p", CopySource={"Bucket": bucket, "Key": "c"}, **source_key("key-b"))
        assert "ServerSideEncryption" not in r and "SSECustomerAlgorithm" not in r
        got = s3.get_object(Bucket=other, Key="p")
        assert got["Body"].read() == data and "ServerSideEncryption" not in got
        assert got["ETag"].strip('"') == hashlib.md5(data).hexdigest()
        # Into encryption: plaintext to SSE-KMS.
        s3.copy_object(Bucket=bucket, Key="k", CopySource={"Bucket": other, "Key": "p"},
                       ServerSideEncryption="aws:kms", SSEKMSKeyId="app-key")
        got = s3.get_object(Bucket=bucket, Key="k")
        assert got["Body"].read() == data and got["SSEKMSKeyId"] == "app-key"
    finally:
        empty_and_delete(s3, other)


def test_bucket_default_encryption(s3, bucket):
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.get_bucket_encryption(Bucket=bucket)
    assert error_of(e) == (404, "ServerSideEncryptionConfigurationNotFoundError")
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": [
        {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": "app-key"}},
    ]})
    rule = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert rule["ApplyServerSideEncryptionByDefault"] == {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": "app-key"}
    put = s3.put_object(Bucket=bucket, Key="d", Body=b"defaulted")
    assert (put["ServerSideEncryption"], put["SSEKMSKeyId"]) == ("aws:kms", "app-key")
    assert s3.get_object(Bucket=bucket, Key="d")["Body"].read() == b"defaulted"
    # A request's own encryption wins over the default.
    put = s3.put_object(Bucket=bucket, Key="e", Body=b"own", ServerSideEncryption="AES256")
    assert put["ServerSideEncryption"] == "AES256" and "SSEKMSKeyId" not in put
    # A default naming a key the gateway lacks is refused when it is set.
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": [
            {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": "nope"}},
        ]})
    assert error_of(e) == (400, "KMS.NotFoundException")
    s3.delete_bucket_encryption(Bucket=bucket)
    assert "ServerSideEncryption" not in s3.put_object(Bucket=bucket, Key="f", Body=b"plain")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.get_bucket_encryption(Bucket=bucket)
    assert error_of(e)[0] == 404


def files_containing(root, needle):
    found = []
    for path in Path(root).rglob("*"):
        if path.is_file() and path.stat().st_size > 0:
            with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
                if m.find(needle) >= 0:
                    found.append(path)
    return found


def test_the_bytes_at_rest_are_ciphertext(stack, s3, bucket):
    # A recognisable 256 KiB pattern, in an object of each mode and, as the control showing the
    # search finds plaintext where it is, in one unencrypted object.
    pattern = hashlib.sha256(b"candybox-at-rest").digest() * 8192
    assert len(pattern) == 256 * 1024
    marker = pattern[100_000:100_064]
    s3.put_object(Bucket=bucket, Key="c", Body=pattern, **KEY_A)
    s3.put_object(Bucket=bucket, Key="s3", Body=pattern, ServerSideEncryption="AES256")
    s3.put_object(Bucket=bucket, Key="kms", Body=pattern, ServerSideEncryption="aws:kms")
    assert files_containing(stack.data_dir, marker) == [], "plaintext of an encrypted object is at rest"
    s3.put_object(Bucket=bucket, Key="plain", Body=pattern)
    assert files_containing(stack.data_dir, marker) != [], "the control object's plaintext was not found"
    for key, extra in [("c", KEY_A), ("s3", {}), ("kms", {})]:
        assert s3.get_object(Bucket=bucket, Key=key, **extra)["Body"].read() == pattern
