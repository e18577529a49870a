"""R2 under faults, driven by `testkit/tests/cluster/r2.rs`, which kills nodes while this runs.

    faults.py puts <endpoint> <bucket> <count>
        PUTs `count` objects (1 KiB to 9 MiB, random bytes) one after the other; prints
        `ACK <key> <sha256>` for each acknowledged PUT and `ERR <key> <sha256> <code>` for each
        refused one (a node or leader was killed under it), then `END`.
    faults.py verify <endpoints> <bucket> <log file>
        Every acknowledged object reads back whole (SHA-256) through every endpoint, and every
        object in the bucket is one that was acknowledged or, if it was refused, is whole
        anyway (committed as the connection broke): nothing is half visible.
    faults.py multipart <endpoint> <bucket> <key> <parts>
        Uploads `parts` parts of 5 MiB, printing `PART <n>` after each (the test kills a chunk
        holder meanwhile), then completes: `DONE <sha256 of the whole>` or `FAILED <code>`.

Environment: NIMBUS_S3_KEY_ID, NIMBUS_S3_SECRET.
"""

import hashlib
import os
import random
import sys

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

MIB = 1 << 20


def client(endpoint):
    return boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=os.environ["NIMBUS_S3_KEY_ID"],
                        aws_secret_access_key=os.environ["NIMBUS_S3_SECRET"], region_name="auto",
                        config=Config(signature_version="s3v4", retries={"max_attempts": 1},
                                      connect_timeout=5, read_timeout=60))


def code_of(error):
    if isinstance(error, ClientError):
        return error.response["Error"]["Code"]
    return type(error).__name__


def puts(endpoint, bucket, count):
    s3 = client(endpoint)
    rng = random.Random(7)
    for i in range(int(count)):
        key = f"obj-{i:04}"
        body = os.urandom(rng.choice([1024, 100_000, 5 * MIB, 9 * MIB]))
        sha = hashlib.sha256(body).hexdigest()
        try:
            s3.put_object(Bucket=bucket, Key=key, Body=body)
            print(f"ACK {key} {sha}", flush=True)
        except (ClientError, BotoCoreError) as e:
            print(f"ERR {key} {sha} {code_of(e)}", flush=True)
    print("END", flush=True)


def verify(endpoints, bucket, log):
    acked, refused = {}, {}
    for line in open(log):
        fields = line.split()
        if fields and fields[0] == "ACK":
            acked[fields[1]] = fields[2]
        elif fields and fields[0] == "ERR":
            refused[fields[1]] = fields[2]
    if not acked:
        sys.exit("nothing was acknowledged")
    for endpoint in endpoints.split(","):
        s3 = client(endpoint)
        for key, sha in acked.items():
            got = hashlib.sha256(s3.get_object(Bucket=bucket, Key=key)["Body"].read()).hexdigest()
            if got != sha:
                sys.exit(f"{key} through {endpoint}: {got}, acknowledged as {sha}")
        listed = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
                  for o in page.get("Contents", [])]
        for key in listed:
            if key in acked:
                continue
            if key not in refused:
                sys.exit(f"{key} is listed and was never written")
            got = hashlib.sha256(s3.get_object(Bucket=bucket, Key=key)["Body"].read()).hexdigest()
            if got != refused[key]:
                sys.exit(f"{key}: a refused PUT left a half object ({got})")
        missing = set(acked) - set(listed)
        if missing:
            sys.exit(f"acknowledged but not listed through {endpoint}: {sorted(missing)[:5]}")
    print(f"OK {len(acked)} acknowledged, {len(refused)} refused", flush=True)


def multipart(endpoint, bucket, key, parts):
    s3 = client(endpoint)
    whole = hashlib.sha256()
    try:
        upload = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
        done = []
        for number in range(1, int(parts) + 1):
            data = os.urandom(5 * MIB)
            whole.update(data)
            for attempt in range(5):
                try:
                    etag = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload, PartNumber=number, Body=data)["ETag"]
                    break
                except (ClientError, BotoCoreError) as e:
                    print(f"RETRY part {number}: {code_of(e)}", flush=True)
            else:
                raise RuntimeError(f"part {number} failed five times")
            done.append({"PartNumber": number, "ETag": etag})
            print(f"PART {number}", flush=True)
        s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload, MultipartUpload={"Parts": done})
        print(f"DONE {whole.hexdigest()}", flush=True)
    except (ClientError, BotoCoreError, RuntimeError) as e:
        print(f"FAILED {code_of(e) if not isinstance(e, RuntimeError) else e}", flush=True)


if __name__ == "__main__":
    {"puts": puts, "verify": verify, "multipart": multipart}[sys.argv[1]](*sys.argv[2:])
