#!/usr/bin/env python3
"""Post a job to an Offgrid node the way Core's offgrid_bridge does (standard library only).

    OFFGRID_AUTH_KEY=shared-secret python3 examples/core_client.py --type echo --payload '{"prompt": "Test"}'

The body is signed with HMAC-SHA256 (key OFFGRID_AUTH_KEY) over
json.dumps(body_without_signature, sort_keys=True, separators=(",", ":"), ensure_ascii=False).
Connection errors are retried 3 times with 2/4/8 s backoff (Core's BrokerUnavailable);
503 maps to NoHostsAvailable and 504 to JobTimeout. Exit status: 0 completed, 1 otherwise.
"""

import argparse
import hashlib
import hmac
import json
import os
import sys
import time
import urllib.error
import urllib.request
import uuid


def canonical(body):
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def sign(body, key):
    unsigned = {k: v for k, v in body.items() if k != "signature"}
    return hmac.new(key.encode(), canonical(unsigned).encode(), hashlib.sha256).hexdigest()


def post_job(url, key, job_type, size, payload, job_id, timeout_s, backoff=(2, 4, 8)):
    body = {
        "job_id": job_id,
        "type": job_type,
        "size": size,
        "timestamp": int(time.time()),
        "payload": payload,
        "timeout_s": timeout_s,
    }
    body["signature"] = sign(body, key)
    data = json.dumps(body).encode()
    for attempt in range(len(backoff) + 1):
        req = urllib.request.Request(
            url.rstrip("/") + "/auction", data=data, headers={"Content-Type": "application/json"}, method="POST"
        )
        try:
            with urllib.request.urlopen(req, timeout=timeout_s + 5) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"{}")
        except (urllib.error.URLError, ConnectionError) as e:
            if attempt == len(backoff):
                return None, {"error": "broker_unavailable", "message": str(e)}
            time.sleep(backoff[attempt])


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", default=os.environ.get("OFFGRID_BROKER_URL", "http://127.0.0.1:9000"))
    p.add_argument("--key", default=os.environ.get("OFFGRID_AUTH_KEY"))
    p.add_argument("--type", default="echo")
    p.add_argument("--size", type=float, default=0.25)
    p.add_argument("--payload", default='{"prompt": "Test"}')
    p.add_argument("--job-id", default=None)
    p.add_argument("--timeout", type=int, default=30)
    a = p.parse_args()
    if not a.key:
        print("set OFFGRID_AUTH_KEY or pass --key", file=sys.stderr)
        return 2
    job_id = a.job_id or "job-" + uuid.uuid4().hex[:12]
    status, body = post_job(a.url, a.key, a.type, a.size, json.loads(a.payload), job_id, a.timeout)
    print(json.dumps({"http_status": status, "response": body}, ensure_ascii=False))
    if status == 200 and body.get("status") == "completed" and body["result"]["ok"]:
        r = body["result"]
        m = r["offgrid_receipt"]["metrics"]
        print(
            f"completed on {r['host']} at {r['quote']} per unit; receipt by {r['offgrid_receipt']['node_id']}, "
            f"compute_tokens_m={m['compute_tokens_m']}, latency_ms={m['latency_ms']}",
            file=sys.stderr,
        )
        return 0
    kind = {503: "NoHostsAvailable", 504: "JobTimeout", None: "BrokerUnavailable"}.get(status, "error")
    print(f"{kind}: {body.get('error')}: {body.get('message')}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
