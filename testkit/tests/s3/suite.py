"""Nimbus R2 through real S3 clients: boto3 and the aws CLI against a testkit cluster.

Run by `testkit/tests/cluster/r2.rs` with the cluster's S3 endpoints and a fresh access key
in the environment:

    NIMBUS_S3_ENDPOINTS   comma-separated http://host:port, one per node
    NIMBUS_S3_KEY_ID      an R2 access key id
    NIMBUS_S3_SECRET      its secret

Every check writes through one node and reads through another, so each is also a check of
R2's strong consistency across nodes.
"""

import base64
import datetime
import hashlib
import io
import os
import random
import shutil
import subprocess
import tempfile
import time
import unittest
import urllib.error
import urllib.request
import uuid

import boto3
import botocore
from botocore.config import Config
from botocore.exceptions import ClientError

ENDPOINTS = os.environ["NIMBUS_S3_ENDPOINTS"].split(",")
KEY_ID = os.environ["NIMBUS_S3_KEY_ID"]
SECRET = os.environ["NIMBUS_S3_SECRET"]
MIB = 1 << 20


def client(node=0, key_id=KEY_ID, secret=SECRET, **config):
    return boto3.client(
        "s3",
        endpoint_url=ENDPOINTS[node % len(ENDPOINTS)],
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        region_name="auto",
        config=Config(signature_version="s3v4", retries={"max_attempts": 1}, **config),
    )


def fresh_bucket(s3):
    name = "t-" + uuid.uuid4().hex[:20]
    s3.create_bucket(Bucket=name)
    return name


def error_code(call):
    try:
        call()
    except ClientError as e:
        return e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"]
    raise AssertionError("the call succeeded")


def aws(*args, env_extra=None):
    env = dict(os.environ)
    env.update(
        AWS_ACCESS_KEY_ID=KEY_ID,
        AWS_SECRET_ACCESS_KEY=SECRET,
        AWS_DEFAULT_REGION="auto",
        AWS_EC2_METADATA_DISABLED="true",
    )
    env.pop("AWS_PROFILE", None)
    env.update(env_extra or {})
    done = subprocess.run(
        ["aws", "--endpoint-url", ENDPOINTS[-1], *args], env=env, capture_output=True, text=True, timeout=300
    )
    if done.returncode != 0:
        raise AssertionError(f"aws {' '.join(args)}: {done.stderr}")
    return done.stdout


class Buckets(unittest.TestCase):
    def test_create_list_head_locate_delete(self):
        a, b = client(0), client(1)
        name = fresh_bucket(a)
        self.assertIn(name, [x["Name"] for x in b.list_buckets()["Buckets"]])
        b.head_bucket(Bucket=name)
        self.assertIn(b.get_bucket_location(Bucket=name)["LocationConstraint"], ("auto", None))
        self.assertEqual(error_code(lambda: a.create_bucket(Bucket=name))[0], "BucketAlreadyOwnedByYou")
        b.put_object(Bucket=name, Key="x", Body=b"1")
        self.assertEqual(error_code(lambda: a.delete_bucket(Bucket=name)), ("BucketNotEmpty", 409))
        a.delete_object(Bucket=name, Key="x")
        a.delete_bucket(Bucket=name)
        self.assertEqual(error_code(lambda: b.head_bucket(Bucket=name))[1], 404)
        self.assertEqual(error_code(lambda: b.list_objects_v2(Bucket=name))[0], "NoSuchBucket")
        self.assertEqual(error_code(lambda: a.create_bucket(Bucket="Bad_Name"))[0], "InvalidBucketName")


class Objects(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.bucket = fresh_bucket(client(0))

    def test_put_get_head_overwrite_delete_across_nodes(self):
        a, b, c = client(0), client(1), client(2)
        body = os.urandom(100_000)
        put = a.put_object(
            Bucket=self.bucket,
            Key="dir/photo.bin",
            Body=body,
            ContentType="image/jpeg",
            CacheControl="max-age=60",
            Metadata={"owner": "ada"},
        )
        self.assertEqual(put["ETag"], '"%s"' % hashlib.md5(body).hexdigest())
        got = b.get_object(Bucket=self.bucket, Key="dir/photo.bin")
        self.assertEqual(got["Body"].read(), body)
        self.assertEqual(got["ContentType"], "image/jpeg")
        self.assertEqual(got["CacheControl"], "max-age=60")
        self.assertEqual(got["Metadata"], {"owner": "ada"})
        self.assertEqual(got["ContentLength"], len(body))
        head = c.head_object(Bucket=self.bucket, Key="dir/photo.bin")
        self.assertEqual(head["ETag"], put["ETag"])
        # Overwrite-after-write, then delete-after-write, read through other nodes.
        c.put_object(Bucket=self.bucket, Key="dir/photo.bin", Body=b"second")
        self.assertEqual(a.get_object(Bucket=self.bucket, Key="dir/photo.bin")["Body"].read(), b"second")
        b.delete_object(Bucket=self.bucket, Key="dir/photo.bin")
        self.assertEqual(error_code(lambda: c.get_object(Bucket=self.bucket, Key="dir/photo.bin")), ("NoSuchKey", 404))
        self.assertEqual(error_code(lambda: a.head_object(Bucket=self.bucket, Key="dir/photo.bin"))[1], 404)
        # Deleting what is not there is not an error.
        a.delete_object(Bucket=self.bucket, Key="never-was")

    def test_empty_and_multichunk_objects(self):
        a, b = client(0), client(2)
        a.put_object(Bucket=self.bucket, Key="empty", Body=b"")
        self.assertEqual(b.get_object(Bucket=self.bucket, Key="empty")["Body"].read(), b"")
        body = os.urandom(9 * MIB + 123)  # three chunks, the last one short
        a.put_object(Bucket=self.bucket, Key="big", Body=body)
        self.assertEqual(hashlib.sha256(b.get_object(Bucket=self.bucket, Key="big")["Body"].read()).digest(),
                         hashlib.sha256(body).digest())

    def test_ranged_reads(self):
        a, b = client(1), client(2)
        body = bytes(range(256)) * 40_000  # ~10 MiB: ranges across chunk boundaries
        a.put_object(Bucket=self.bucket, Key="ranged", Body=body)
        for first, last in [(0, 0), (10, 19), (4 * MIB - 5, 4 * MIB + 5), (len(body) - 7, len(body) - 1)]:
            got = b.get_object(Bucket=self.bucket, Key="ranged", Range=f"bytes={first}-{last}")
            self.assertEqual(got["ResponseMetadata"]["HTTPStatusCode"], 206)
            self.assertEqual(got["ContentRange"], f"bytes {first}-{last}/{len(body)}")
            self.assertEqual(got["Body"].read(), body[first:last + 1])
        self.assertEqual(b.get_object(Bucket=self.bucket, Key="ranged", Range="bytes=-100")["Body"].read(), body[-100:])
        self.assertEqual(error_code(lambda: b.get_object(Bucket=self.bucket, Key="ranged", Range=f"bytes={len(body)}-")),
                         ("InvalidRange", 416))

    def test_conditional_reads_and_writes(self):
        a, b = client(0), client(1)
        etag = a.put_object(Bucket=self.bucket, Key="cond", Body=b"v1")["ETag"]
        self.assertEqual(b.get_object(Bucket=self.bucket, Key="cond", IfMatch=etag)["Body"].read(), b"v1")
        self.assertEqual(error_code(lambda: b.get_object(Bucket=self.bucket, Key="cond", IfMatch='"nope"')),
                         ("PreconditionFailed", 412))
        self.assertEqual(error_code(lambda: b.get_object(Bucket=self.bucket, Key="cond", IfNoneMatch=etag))[1], 304)
        future = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=1)
        past = datetime.datetime(2000, 1, 1, tzinfo=datetime.timezone.utc)
        self.assertEqual(error_code(lambda: b.get_object(Bucket=self.bucket, Key="cond", IfModifiedSince=future))[1], 304)
        self.assertEqual(error_code(lambda: b.get_object(Bucket=self.bucket, Key="cond", IfUnmodifiedSince=past))[1], 412)
        # Create-only writes.
        self.assertEqual(error_code(lambda: a.put_object(Bucket=self.bucket, Key="cond", Body=b"x", IfNoneMatch="*")),
                         ("PreconditionFailed", 412))
        a.put_object(Bucket=self.bucket, Key="cond-new", Body=b"x", IfNoneMatch="*")
        self.assertEqual(b.get_object(Bucket=self.bucket, Key="cond")["Body"].read(), b"v1", "a failed write changes nothing")

    def test_response_overrides_and_content_md5(self):
        a, b = client(0), client(1)
        body = b"hello overrides"
        md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
        a.put_object(Bucket=self.bucket, Key="o.txt", Body=body, ContentMD5=md5)
        got = b.get_object(Bucket=self.bucket, Key="o.txt", ResponseContentType="text/plain",
                           ResponseContentDisposition="attachment; filename=o.txt")
        self.assertEqual(got["ContentType"], "text/plain")
        self.assertEqual(got["ContentDisposition"], "attachment; filename=o.txt")
        wrong = base64.b64encode(hashlib.md5(b"other").digest()).decode()
        self.assertEqual(error_code(lambda: a.put_object(Bucket=self.bucket, Key="bad-md5", Body=body, ContentMD5=wrong))[0],
                         "BadDigest")
        self.assertEqual(error_code(lambda: b.head_object(Bucket=self.bucket, Key="bad-md5"))[1], 404)

    def test_copy_object(self):
        a, b = client(0), client(2)
        a.put_object(Bucket=self.bucket, Key="src", Body=b"copy me", ContentType="text/plain", Metadata={"k": "v"})
        b.copy_object(Bucket=self.bucket, Key="dst", CopySource={"Bucket": self.bucket, "Key": "src"})
        got = a.get_object(Bucket=self.bucket, Key="dst")
        self.assertEqual((got["Body"].read(), got["ContentType"], got["Metadata"]), (b"copy me", "text/plain", {"k": "v"}))
        b.copy_object(Bucket=self.bucket, Key="dst2", CopySource=f"{self.bucket}/src", MetadataDirective="REPLACE",
                      ContentType="application/json", Metadata={"new": "1"})
        got = a.head_object(Bucket=self.bucket, Key="dst2")
        self.assertEqual((got["ContentType"], got["Metadata"]), ("application/json", {"new": "1"}))
        self.assertEqual(error_code(lambda: b.copy_object(Bucket=self.bucket, Key="dst3",
                                                          CopySource=f"{self.bucket}/src",
                                                          CopySourceIfMatch='"nope"')), ("PreconditionFailed", 412))
        # The copy keeps its bytes after the source is gone.
        a.delete_object(Bucket=self.bucket, Key="src")
        self.assertEqual(b.get_object(Bucket=self.bucket, Key="dst")["Body"].read(), b"copy me")

    def test_delete_objects(self):
        a, b = client(1), client(0)
        for i in range(5):
            a.put_object(Bucket=self.bucket, Key=f"batch/{i}", Body=b"x")
        reply = b.delete_objects(Bucket=self.bucket, Delete={"Objects": [{"Key": f"batch/{i}"} for i in range(6)]})
        self.assertEqual(sorted(d["Key"] for d in reply["Deleted"]), [f"batch/{i}" for i in range(6)])
        self.assertEqual(a.list_objects_v2(Bucket=self.bucket, Prefix="batch/")["KeyCount"], 0)

    def test_key_limits(self):
        a = client(0)
        self.assertEqual(error_code(lambda: a.put_object(Bucket=self.bucket, Key="k" * 1025, Body=b"x"))[0],
                         "KeyTooLongError")
        a.put_object(Bucket=self.bucket, Key="k" * 1024, Body=b"x")
        unicode = "ünïcødé/日本語 key?&=+.txt"
        a.put_object(Bucket=self.bucket, Key=unicode, Body=b"u")
        self.assertEqual(client(1).get_object(Bucket=self.bucket, Key=unicode)["Body"].read(), b"u")
        self.assertEqual(error_code(lambda: a.put_object(Bucket=self.bucket, Key="m", Body=b"x",
                                                         Metadata={"big": "v" * 9000}))[0], "MetadataTooLarge")


class Listing(unittest.TestCase):
    def test_delimiter_and_pagination_over_2500_keys(self):
        a, b = client(0), client(1)
        bucket = fresh_bucket(a)
        # 2,500 keys in 50 "folders" of 50, plus top-level files; written in parallel.
        keys = [f"dir{d:02}/file{f:02}" for d in range(50) for f in range(50)] + [f"top{t}" for t in range(10)]
        from concurrent.futures import ThreadPoolExecutor
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda k: client(hash(k)).put_object(Bucket=bucket, Key=k, Body=k.encode()), keys))
        paginator = b.get_paginator("list_objects_v2")
        listed = [o["Key"] for page in paginator.paginate(Bucket=bucket, PaginationConfig={"PageSize": 700})
                  for o in page.get("Contents", [])]
        self.assertEqual(listed, sorted(keys), "every key once, in order, across pages")
        pages = list(paginator.paginate(Bucket=bucket, Delimiter="/", PaginationConfig={"PageSize": 20}))
        prefixes = [p["Prefix"] for page in pages for p in page.get("CommonPrefixes", [])]
        files = [o["Key"] for page in pages for o in page.get("Contents", [])]
        self.assertEqual(prefixes, [f"dir{d:02}/" for d in range(50)])
        self.assertEqual(files, [f"top{t}" for t in range(10)])
        self.assertGreater(len(pages), 2)
        inside = b.list_objects_v2(Bucket=bucket, Prefix="dir07/", Delimiter="/")
        self.assertEqual(inside["KeyCount"], 50)
        after = b.list_objects_v2(Bucket=bucket, StartAfter="dir49/file47")
        self.assertEqual([o["Key"] for o in after["Contents"]][:3], ["dir49/file48", "dir49/file49", "top0"])
        # ListObjects (v1) with markers.
        v1 = [o["Key"] for page in b.get_paginator("list_objects").paginate(Bucket=bucket, PaginationConfig={"PageSize": 900})
              for o in page.get("Contents", [])]
        self.assertEqual(v1, sorted(keys))
        # encoding-type=url (botocore asks for it on every listing and decodes what it asked for).
        a.put_object(Bucket=bucket, Key="space key/ü", Body=b"x")
        got = b.list_objects_v2(Bucket=bucket, Prefix="space", EncodingType="url")
        self.assertEqual([o["Key"] for o in got["Contents"]], ["space%20key/%C3%BC"], "asked for explicitly, it stays encoded")


class Multipart(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.bucket = fresh_bucket(client(0))

    def test_upload_list_complete_across_nodes(self):
        a, b, c = client(0), client(1), client(2)
        upload = a.create_multipart_upload(Bucket=self.bucket, Key="mp", ContentType="video/mp4", Metadata={"m": "1"})
        uid = upload["UploadId"]
        self.assertIn(uid, [u["UploadId"] for u in b.list_multipart_uploads(Bucket=self.bucket).get("Uploads", [])])
        parts_data = [os.urandom(5 * MIB), os.urandom(5 * MIB), os.urandom(MIB)]
        etags = []
        for number, data in enumerate(parts_data, 1):
            node = [a, b, c][number % 3]
            etags.append(node.upload_part(Bucket=self.bucket, Key="mp", UploadId=uid, PartNumber=number, Body=data)["ETag"])
        listed = c.list_parts(Bucket=self.bucket, Key="mp", UploadId=uid)["Parts"]
        self.assertEqual([(p["PartNumber"], p["ETag"], p["Size"]) for p in listed],
                         [(i + 1, etags[i], len(d)) for i, d in enumerate(parts_data)])
        self.assertEqual(error_code(lambda: a.head_object(Bucket=self.bucket, Key="mp"))[1], 404, "not visible before completion")
        done = b.complete_multipart_upload(Bucket=self.bucket, Key="mp", UploadId=uid, MultipartUpload={
            "Parts": [{"PartNumber": i + 1, "ETag": e} for i, e in enumerate(etags)]})
        expected = hashlib.md5(b"".join(hashlib.md5(d).digest() for d in parts_data)).hexdigest() + "-3"
        self.assertEqual(done["ETag"], f'"{expected}"')
        got = c.get_object(Bucket=self.bucket, Key="mp")
        self.assertEqual(got["Body"].read(), b"".join(parts_data))
        self.assertEqual((got["ContentType"], got["Metadata"]), ("video/mp4", {"m": "1"}))
        self.assertEqual(error_code(lambda: a.list_parts(Bucket=self.bucket, Key="mp", UploadId=uid))[0], "NoSuchUpload")

    def test_r2_part_rules(self):
        a = client(1)
        uid = a.create_multipart_upload(Bucket=self.bucket, Key="rules")["UploadId"]
        e1 = a.upload_part(Bucket=self.bucket, Key="rules", UploadId=uid, PartNumber=1, Body=b"x" * MIB)["ETag"]
        e2 = a.upload_part(Bucket=self.bucket, Key="rules", UploadId=uid, PartNumber=2, Body=b"y" * 10)["ETag"]
        complete = lambda parts: a.complete_multipart_upload(Bucket=self.bucket, Key="rules", UploadId=uid,
                                                             MultipartUpload={"Parts": parts})
        self.assertEqual(error_code(lambda: complete([{"PartNumber": 1, "ETag": e1}, {"PartNumber": 2, "ETag": e2}]))[0],
                         "EntityTooSmall")
        self.assertEqual(error_code(lambda: complete([{"PartNumber": 2, "ETag": e2}, {"PartNumber": 1, "ETag": e1}]))[0],
                         "InvalidPartOrder")
        self.assertEqual(error_code(lambda: complete([{"PartNumber": 1, "ETag": '"0000"'}]))[0], "InvalidPart")
        e3 = a.upload_part(Bucket=self.bucket, Key="rules", UploadId=uid, PartNumber=3, Body=b"z" * (5 * MIB))["ETag"]
        e4 = a.upload_part(Bucket=self.bucket, Key="rules", UploadId=uid, PartNumber=4, Body=b"w" * (6 * MIB))["ETag"]
        self.assertEqual(error_code(lambda: complete([{"PartNumber": 3, "ETag": e3}, {"PartNumber": 4, "ETag": e4}]))[0],
                         "InvalidPart", "R2: every part but the last is the same size, the last no larger")
        self.assertEqual(error_code(lambda: a.head_object(Bucket=self.bucket, Key="rules"))[1], 404, "nothing visible")
        a.abort_multipart_upload(Bucket=self.bucket, Key="rules", UploadId=uid)
        self.assertEqual(error_code(lambda: a.upload_part(Bucket=self.bucket, Key="rules", UploadId=uid, PartNumber=5,
                                                          Body=b"x"))[0], "NoSuchUpload")

    def test_upload_part_copy(self):
        a, b = client(2), client(0)
        source = os.urandom(12 * MIB)
        a.put_object(Bucket=self.bucket, Key="copy-src", Body=source)
        uid = b.create_multipart_upload(Bucket=self.bucket, Key="copied")["UploadId"]
        p1 = b.upload_part_copy(Bucket=self.bucket, Key="copied", UploadId=uid, PartNumber=1,
                                CopySource={"Bucket": self.bucket, "Key": "copy-src"},
                                CopySourceRange=f"bytes=0-{6 * MIB - 1}")["CopyPartResult"]["ETag"]
        p2 = b.upload_part_copy(Bucket=self.bucket, Key="copied", UploadId=uid, PartNumber=2,
                                CopySource={"Bucket": self.bucket, "Key": "copy-src"},
                                CopySourceRange=f"bytes={6 * MIB}-{12 * MIB - 1}")["CopyPartResult"]["ETag"]
        b.complete_multipart_upload(Bucket=self.bucket, Key="copied", UploadId=uid, MultipartUpload={
            "Parts": [{"PartNumber": 1, "ETag": p1}, {"PartNumber": 2, "ETag": p2}]})
        self.assertEqual(a.get_object(Bucket=self.bucket, Key="copied")["Body"].read(), source)


class Presigned(unittest.TestCase):
    def test_presigned_get_put_and_expiry(self):
        a = client(0)
        bucket = fresh_bucket(a)
        put_url = a.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "p.txt"}, ExpiresIn=300)
        request = urllib.request.Request(put_url, data=b"presigned body", method="PUT")
        with urllib.request.urlopen(request) as reply:
            self.assertEqual(reply.status, 200)
        get_url = client(1).generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "p.txt"}, ExpiresIn=300)
        with urllib.request.urlopen(get_url) as reply:
            self.assertEqual(reply.read(), b"presigned body")
        expired = client(2).generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "p.txt"}, ExpiresIn=1)
        time.sleep(2.1)  # the URL's own clock: it must be past its expiry, nothing to await
        with self.assertRaises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(expired)
        self.assertEqual(refused.exception.code, 403)
        self.assertIn(b"AccessDenied", refused.exception.read())
        tampered = get_url.replace("p.txt", "q.txt")
        with self.assertRaises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(tampered)
        self.assertEqual(refused.exception.code, 403)


class Authentication(unittest.TestCase):
    def test_bad_signature_unknown_key_and_unsigned(self):
        self.assertEqual(error_code(lambda: client(0, secret="0" * 64).list_buckets()), ("SignatureDoesNotMatch", 403))
        self.assertEqual(error_code(lambda: client(1, key_id="AKIDNOSUCHKEY0000000").list_buckets()),
                         ("InvalidAccessKeyId", 403))
        with self.assertRaises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(ENDPOINTS[0] + "/")
        self.assertEqual(refused.exception.code, 403)


class Cors(unittest.TestCase):
    def test_put_get_preflight_delete(self):
        a, b = client(0), client(1)
        bucket = fresh_bucket(a)
        a.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": [{
            "AllowedOrigins": ["https://app.example.com"], "AllowedMethods": ["GET", "PUT"],
            "AllowedHeaders": ["content-type", "x-amz-*"], "ExposeHeaders": ["ETag"], "MaxAgeSeconds": 600}]})
        rules = b.get_bucket_cors(Bucket=bucket)["CORSRules"]
        self.assertEqual(rules[0]["AllowedOrigins"], ["https://app.example.com"])
        preflight = urllib.request.Request(f"{ENDPOINTS[2]}/{bucket}/file.txt", method="OPTIONS", headers={
            "Origin": "https://app.example.com", "Access-Control-Request-Method": "PUT",
            "Access-Control-Request-Headers": "content-type"})
        with urllib.request.urlopen(preflight) as reply:
            self.assertEqual(reply.headers["Access-Control-Allow-Origin"], "https://app.example.com")
            self.assertIn("PUT", reply.headers["Access-Control-Allow-Methods"])
            self.assertEqual(reply.headers["Access-Control-Max-Age"], "600")
        denied = urllib.request.Request(f"{ENDPOINTS[2]}/{bucket}/file.txt", method="OPTIONS", headers={
            "Origin": "https://evil.test", "Access-Control-Request-Method": "PUT"})
        with self.assertRaises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(denied)
        self.assertEqual(refused.exception.code, 403)
        a.delete_bucket_cors(Bucket=bucket)
        self.assertEqual(error_code(lambda: b.get_bucket_cors(Bucket=bucket))[0], "NoSuchCORSConfiguration")


class AwsCli(unittest.TestCase):
    def test_cp_multipart_and_sync(self):
        bucket = fresh_bucket(client(0))
        work = tempfile.mkdtemp()
        try:
            big = os.path.join(work, "big.bin")
            with open(big, "wb") as f:
                f.write(os.urandom(40 * MIB))
            aws("s3", "cp", big, f"s3://{bucket}/big.bin")
            head = client(1).head_object(Bucket=bucket, Key="big.bin")
            self.assertTrue(head["ETag"].strip('"').endswith("-5"), f"the CLI chose multipart (8 MiB parts): {head['ETag']}")
            back = os.path.join(work, "back.bin")
            aws("s3", "cp", f"s3://{bucket}/big.bin", back)
            with open(big, "rb") as f1, open(back, "rb") as f2:
                self.assertEqual(hashlib.sha256(f1.read()).digest(), hashlib.sha256(f2.read()).digest())
            tree = os.path.join(work, "tree")
            for path in ["a.txt", "sub/b.txt", "sub/deeper/c.txt"]:
                os.makedirs(os.path.dirname(os.path.join(tree, path)), exist_ok=True)
                with open(os.path.join(tree, path), "w") as f:
                    f.write(path * 100)
            aws("s3", "sync", tree, f"s3://{bucket}/site/")
            listed = sorted(o["Key"] for o in client(2).list_objects_v2(Bucket=bucket, Prefix="site/")["Contents"])
            self.assertEqual(listed, ["site/a.txt", "site/sub/b.txt", "site/sub/deeper/c.txt"])
            # A second sync uploads nothing (sizes and times match).
            self.assertEqual(aws("s3", "sync", tree, f"s3://{bucket}/site/").strip(), "")
            out = aws("s3", "ls", f"s3://{bucket}/site/")
            self.assertIn("PRE sub/", out)
        finally:
            shutil.rmtree(work)


if __name__ == "__main__":
    unittest.main(verbosity=2)
