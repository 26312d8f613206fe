#!/usr/bin/env python3
"""A tiny signed (AWS SigV4) S3 client for the rkectl lab, standard library only.

The lab's S3 server (s3s-fs) checks signatures, so even a health check has to sign.
This is deliberately small: path-style requests, one region, whole-body payload
hashes (no streaming), enough for the lab script and for tests that want to look
at what rkectl left in the bucket without pulling in an SDK.

Configuration comes from the environment, the same names `lab up` prints:
  S3_ENDPOINT    e.g. http://10.77.0.1:9000
  S3_ACCESS_KEY, S3_SECRET_KEY
  S3_REGION      optional, default us-east-1

Usage:
  s3req.py ls BUCKET [PREFIX]      list objects: "<size> <etag> <key>" per line
  s3req.py mb BUCKET               create a bucket (ok if it exists already)
  s3req.py head-bucket BUCKET      exit 0 if the bucket exists, 1 if not
  s3req.py head BUCKET KEY         print the response headers of an object
  s3req.py get BUCKET KEY          write the object to stdout
  s3req.py put BUCKET KEY FILE|- [CONTENT_TYPE]
                                   upload a file (or stdin), optionally with a Content-Type
  s3req.py rm BUCKET KEY           delete an object

Exit codes: 0 ok, 1 the server said no (HTTP >= 300), 2 usage, 3 no connection.
"""

import datetime
import hashlib
import hmac
import http.client
import os
import sys
import urllib.parse
import xml.etree.ElementTree as ET

S3_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


class S3Error(Exception):
    def __init__(self, status, body):
        super().__init__(f"HTTP {status}: {body[:500]!r}")
        self.status = status
        self.body = body


def _quote(s, safe):
    # SigV4 wants RFC 3986 encoding: everything but unreserved characters.
    return urllib.parse.quote(s, safe=safe)


def _hmac(key, msg):
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


class Client:
    def __init__(self, endpoint, access_key, secret_key, region="us-east-1", timeout=10):
        u = urllib.parse.urlsplit(endpoint)
        if u.scheme != "http":
            raise SystemExit(f"s3req: only http:// endpoints are supported, got {endpoint}")
        self.host = u.hostname
        self.port = u.port or 80
        self.host_header = u.netloc
        self.ak, self.sk, self.region, self.timeout = access_key, secret_key, region, timeout

    def request(self, method, bucket, key="", query=None, body=b"", content_type=None):
        query = query or {}
        path = "/" + bucket + ("/" + key if key else "")
        canonical_uri = _quote(path, safe="/~")
        canonical_query = "&".join(
            f"{_quote(k, '~')}={_quote(v, '~')}" for k, v in sorted(query.items())
        )
        now = datetime.datetime.now(datetime.timezone.utc)
        amz_date = now.strftime("%Y%m%dT%H%M%SZ")
        day = amz_date[:8]
        payload_hash = hashlib.sha256(body).hexdigest()
        headers = {
            "host": self.host_header,
            "x-amz-content-sha256": payload_hash,
            "x-amz-date": amz_date,
        }
        signed = ";".join(sorted(headers))
        canonical_headers = "".join(f"{k}:{headers[k]}\n" for k in sorted(headers))
        creq = "\n".join(
            [method, canonical_uri, canonical_query, canonical_headers, signed, payload_hash]
        )
        scope = f"{day}/{self.region}/s3/aws4_request"
        to_sign = "\n".join(
            ["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(creq.encode()).hexdigest()]
        )
        k = _hmac(("AWS4" + self.sk).encode(), day)
        for part in (self.region, "s3", "aws4_request"):
            k = _hmac(k, part)
        sig = hmac.new(k, to_sign.encode(), hashlib.sha256).hexdigest()
        headers["authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={self.ak}/{scope}, SignedHeaders={signed}, Signature={sig}"
        )
        headers["content-length"] = str(len(body))
        if content_type:
            # Not signed (SigV4 does not require it); stored as the object's Content-Type.
            headers["content-type"] = content_type
        url = canonical_uri + ("?" + canonical_query if canonical_query else "")
        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            conn.request(method, url, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, dict(resp.getheaders()), data
        finally:
            conn.close()

    def checked(self, method, bucket, key="", query=None, body=b"", content_type=None):
        status, headers, data = self.request(method, bucket, key, query, body, content_type)
        if status >= 300:
            raise S3Error(status, data.decode(errors="replace"))
        return headers, data

    def list(self, bucket, prefix=""):
        token = None
        while True:
            q = {"list-type": "2", "prefix": prefix}
            if token:
                q["continuation-token"] = token
            _, data = self.checked("GET", bucket, query=q)
            root = ET.fromstring(data)
            for c in root.findall(S3_NS + "Contents"):
                yield (
                    int(c.findtext(S3_NS + "Size", "0")),
                    c.findtext(S3_NS + "ETag", ""),
                    c.findtext(S3_NS + "Key", ""),
                )
            if root.findtext(S3_NS + "IsTruncated", "false") != "true":
                return
            token = root.findtext(S3_NS + "NextContinuationToken")


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        c = Client(
            os.environ["S3_ENDPOINT"],
            os.environ["S3_ACCESS_KEY"],
            os.environ["S3_SECRET_KEY"],
            os.environ.get("S3_REGION") or "us-east-1",
        )
    except KeyError as e:
        print(f"s3req: {e.args[0]} is not set", file=sys.stderr)
        return 2
    cmd, args = argv[1], argv[2:]
    try:
        if cmd == "ls" and len(args) in (1, 2):
            for size, etag, key in c.list(args[0], args[1] if len(args) == 2 else ""):
                print(size, etag, key)
        elif cmd == "mb" and len(args) == 1:
            status, _, data = c.request("PUT", args[0])
            # 409 BucketAlreadyOwnedByYou / BucketAlreadyExists: fine for "make sure it exists".
            if status >= 300 and status != 409:
                raise S3Error(status, data.decode(errors="replace"))
        elif cmd == "head-bucket" and len(args) == 1:
            status, _, _ = c.request("HEAD", args[0])
            return 0 if status < 300 else 1
        elif cmd == "head" and len(args) == 2:
            headers, _ = c.checked("HEAD", args[0], args[1])
            for k, v in headers.items():
                print(f"{k}: {v}")
        elif cmd == "get" and len(args) == 2:
            _, data = c.checked("GET", args[0], args[1])
            sys.stdout.buffer.write(data)
        elif cmd == "put" and len(args) in (3, 4):
            if args[2] == "-":
                body = sys.stdin.buffer.read()
            else:
                with open(args[2], "rb") as f:
                    body = f.read()
            c.checked("PUT", args[0], args[1], body=body,
                      content_type=args[3] if len(args) == 4 else None)
        elif cmd == "rm" and len(args) == 2:
            c.checked("DELETE", args[0], args[1])
        else:
            print(__doc__, file=sys.stderr)
            return 2
    except S3Error as e:
        print(f"s3req: {cmd}: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"s3req: {cmd}: cannot reach {os.environ['S3_ENDPOINT']}: {e}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
