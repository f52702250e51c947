#!/usr/bin/env python3
"""moto_server, with the checks S3 makes on presigned URLs and moto does not.

moto 5 serves a presigned URL's request whatever its signature and however long ago it expired
(with its IAM checks on, it fails with a 500 on any request without an Authorization header), so
a test that an expired or tampered URL is refused would pass against it for the wrong reason. This
runs moto's own WSGI application behind one check, done as S3 documents it
(https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-query-string-auth.html) and computed with
botocore's signer, an implementation independent of the kit's:

- a request with `X-Amz-Signature` in its query is a presigned request: its credential must name
  a known access key, `X-Amz-Date` + `X-Amz-Expires` must not be past (403 AccessDenied "Request
  has expired"), and the signature over the method, path, query and the headers it names must
  match (403 SignatureDoesNotMatch): a changed key, method, expiry, content type or content
  length fails;
- every other request goes to moto unchanged.

Usage: moto-server.py -H 127.0.0.1 -p 55000 [--credentials ACCESS_KEY:SECRET]
(default credentials: $AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY, else testing:testing).
"""

import argparse
import calendar
import datetime
import hmac
import os
import sys
from urllib.parse import quote, unquote

from botocore.auth import S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import run_simple


def refuse(start_response, code, message):
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message></Error>"
    ).encode()
    start_response("403 Forbidden", [("Content-Type", "application/xml"), ("Content-Length", str(len(body)))])
    return [body]


class PresignCheck:
    def __init__(self, app, secrets):
        self.app = app
        self.secrets = secrets

    def __call__(self, environ, start_response):
        raw = environ.get("QUERY_STRING", "")
        pairs = [pair.partition("=") for pair in raw.split("&") if pair]
        params = {unquote(key): unquote(value) for key, _, value in pairs}
        if "X-Amz-Signature" not in params:
            return self.app(environ, start_response)
        try:
            access_key, day, region, service, terminal = params["X-Amz-Credential"].split("/")
            stamp = params["X-Amz-Date"]
            expires = int(params["X-Amz-Expires"])
            signed = params["X-Amz-SignedHeaders"].split(";")
            signed_at = calendar.timegm(datetime.datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").timetuple())
        except (KeyError, ValueError):
            return refuse(start_response, "AuthorizationQueryParametersError", "Query-string authentication requires all X-Amz parameters")
        if params.get("X-Amz-Algorithm") != "AWS4-HMAC-SHA256" or service != "s3" or terminal != "aws4_request" or day != stamp[:8]:
            return refuse(start_response, "AuthorizationQueryParametersError", "Error parsing the X-Amz-Credential parameter")
        secret = self.secrets.get(access_key)
        if secret is None:
            return refuse(start_response, "InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist in our records.")
        if not 1 <= expires <= 604800:
            return refuse(start_response, "AuthorizationQueryParametersError", "X-Amz-Expires must be between 1 and 604800 seconds")
        if datetime.datetime.now(datetime.timezone.utc).timestamp() > signed_at + expires:
            return refuse(start_response, "AccessDenied", "Request has expired")

        # The request as botocore would sign it: path as sent (one encoding), the query without
        # the signature, exactly the headers the URL names.
        raw_uri = environ.get("RAW_URI") or environ.get("REQUEST_URI") or quote(environ.get("PATH_INFO", "/"))
        path = quote(unquote(raw_uri.split("?", 1)[0]), safe="/~")
        query = "&".join(pair for pair in raw.split("&") if pair and not pair.startswith("X-Amz-Signature="))
        headers = {}
        for name in signed:
            if name == "host":
                value = environ.get("HTTP_HOST", "")
            elif name == "content-type":
                value = environ.get("CONTENT_TYPE")
            elif name == "content-length":
                value = environ.get("CONTENT_LENGTH")
            else:
                value = environ.get("HTTP_" + name.upper().replace("-", "_"))
            if value is None:
                return refuse(start_response, "SignatureDoesNotMatch", f"The request lacks the signed header {name}")
            headers[name] = value
        request = AWSRequest(method=environ["REQUEST_METHOD"], url=f"http://{headers.get('host', 'localhost')}{path}?{query}", headers=headers)
        request.context["timestamp"] = stamp
        auth = S3SigV4QueryAuth(Credentials(access_key, secret), "s3", region, expires=expires)
        canonical = auth.canonical_request(request)
        expected = auth.signature(auth.string_to_sign(request, canonical), request)
        if not hmac.compare_digest(expected, params["X-Amz-Signature"]):
            return refuse(start_response, "SignatureDoesNotMatch", "The request signature we calculated does not match the signature you provided.")
        return self.app(environ, start_response)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=5000)
    default = f"{os.environ.get('AWS_ACCESS_KEY_ID', 'testing')}:{os.environ.get('AWS_SECRET_ACCESS_KEY', 'testing')}"
    parser.add_argument("--credentials", action="append", default=[], help="ACCESS_KEY:SECRET (repeatable)")
    options = parser.parse_args()
    secrets = dict(entry.split(":", 1) for entry in (options.credentials or [default]))
    app = PresignCheck(DomainDispatcherApplication(create_backend_app), secrets)
    print(f"moto-server: moto with presigned-URL checks on {options.host}:{options.port}", file=sys.stderr, flush=True)
    run_simple(options.host, options.port, app, threaded=True, use_reloader=False)


if __name__ == "__main__":
    main()
