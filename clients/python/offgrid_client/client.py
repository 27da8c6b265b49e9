"""The Offgrid-Net client for Core.

Core's jobs (``{"kind": "llm_call", "payload": {"prompt": ...}}``) become Offgrid jobs
(``{"type": "compute", "payload": ..., "size": ...}``), signed with HMAC-SHA256 (standard
library) or Ed25519 (``cryptography``), and posted to a node's ``POST /auction``. The answer
comes back in Core's shape (``from_offgrid``).

Modes, from ``mode=`` or the ``OFFGRID_MODE`` environment variable:

- ``offgrid``: only the mesh; failures raise typed errors.
- ``disabled``: never the mesh; the ``local`` callable runs the job (``OffgridDisabled``
  without one).
- ``auto`` (default): the mesh, and the ``local`` callable when the mesh is unavailable
  (after the retries) or unreachable. Errors that retrying cannot fix (a bad request, a bad
  signature, a conflict, no funds) raise in every mode.

Retries: a 503 answer or a connection error is retried after 2, 4 and 8 seconds
(``RETRY_DELAYS``), then raises ``OffgridUnavailable``. A retry sends the same job id, so the
node answers it from its job book: a job never runs twice.
"""

import hashlib
import hmac as _hmac
import json
import math
import os
import socket
import time
import urllib.error
import urllib.request
import uuid

MODES = ("auto", "offgrid", "disabled")
RETRY_DELAYS = (2, 4, 8)

# Core's job kinds and the Offgrid job types they run as.
KIND_TO_TYPE = {"llm_call": "compute", "embedding": "compute", "echo": "echo"}


class OffgridError(Exception):
    """An Offgrid answer that is not a completed job: ``status`` and the node's ``code``."""

    def __init__(self, message, status=None, code=None, body=None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.body = body


class OffgridBadRequest(OffgridError):
    """400: the job is malformed (the message names the problem)."""


class OffgridAuthError(OffgridError):
    """401: bad signature, stale timestamp, or signed for another broker."""


class OffgridPaymentRequired(OffgridError):
    """402: the broker node's account cannot pay for the job."""


class OffgridConflict(OffgridError):
    """409: the job id was used for another job."""


class OffgridJobFailed(OffgridError):
    """502: the hosts that received the job failed it. Kept by the node: a retry with the
    same job id gets this answer again, the job is not re-run."""


class OffgridUnavailable(OffgridError):
    """503 or unreachable after every retry (no hosts, node down)."""


class OffgridTimeout(OffgridError):
    """504: no host finished the job within its deadline."""


class OffgridDisabled(OffgridError):
    """The mode is ``disabled`` and no local fallback was given."""


_BY_STATUS = {
    400: OffgridBadRequest,
    401: OffgridAuthError,
    402: OffgridPaymentRequired,
    409: OffgridConflict,
    502: OffgridJobFailed,
    413: OffgridBadRequest,
    503: OffgridUnavailable,
    504: OffgridTimeout,
}


def canonical(obj):
    """The canonical JSON the node checks body signatures over: sorted keys, compact."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def estimate_size(payload):
    """Units for the quote of an LLM call: estimated tokens (a unit is one token): about 4
    characters a token for the prompt, plus ``max_tokens`` (256 if absent) for the answer,
    the node's own estimate (node/src/market/size.rs)."""
    text = payload.get("prompt")
    if text is None and isinstance(payload.get("messages"), list):
        text = " ".join(str(m.get("content", "")) for m in payload["messages"] if isinstance(m, dict))
    answer = payload.get("max_tokens")
    if not isinstance(answer, int) or isinstance(answer, bool) or answer <= 0:
        answer = 256
    tokens = math.ceil(len(str(text or "")) / 4) + min(answer, 1 << 20)
    return max(tokens, 1)


def to_offgrid(core_job, job_id=None, timeout_s=None):
    """A Core job as an Offgrid job body (unsigned)."""
    kind = core_job.get("kind", "llm_call")
    job_type = core_job.get("type") or KIND_TO_TYPE.get(kind, kind)
    payload = dict(core_job.get("payload") or {})
    body = {
        "job_id": job_id or core_job.get("job_id") or "core-" + uuid.uuid4().hex[:16],
        "type": job_type,
        "payload": payload,
        "size": core_job.get("size") or estimate_size(payload),
    }
    if timeout_s or core_job.get("timeout_s"):
        body["timeout_s"] = int(timeout_s or core_job["timeout_s"])
    return body


def from_offgrid(answer):
    """A completed Offgrid answer in Core's shape: the text, usage, host and receipt."""
    result = answer.get("result") or {}
    output = result.get("output")
    receipt = result.get("offgrid_receipt") or {}
    metrics = receipt.get("metrics") or {}
    tokens = metrics.get("compute_tokens")
    text = output if isinstance(output, str) else json.dumps(output, sort_keys=True)
    return {
        "ok": bool(result.get("ok")),
        "job_id": answer.get("job_id"),
        "text": text,
        "output": output,
        "usage": {"total_tokens": tokens} if tokens is not None else {},
        "provider": "offgrid",
        "host": result.get("host"),
        "quote": result.get("quote"),
        "receipt": receipt,
    }


class OffgridClient:
    """Posts Core's jobs to one node. ``sleep``, ``clock`` and ``opener`` are injectable so
    tests run the retries on a fake clock."""

    def __init__(self, base_url, hmac_key=None, ed25519_seed=None, key_id=None, audience=None,
                 mode=None, local=None, timeout_s=60, sleep=time.sleep, clock=time.time,
                 opener=urllib.request.urlopen, retry_delays=RETRY_DELAYS):
        self.base_url = base_url.rstrip("/")
        self.hmac_key = hmac_key.encode() if isinstance(hmac_key, str) else hmac_key
        self.ed25519_seed = ed25519_seed
        self.key_id = key_id
        self.audience = audience
        self.mode = (mode or os.environ.get("OFFGRID_MODE") or "auto").lower()
        if self.mode not in MODES:
            raise ValueError("OFFGRID_MODE must be one of %s, not %r" % ("/".join(MODES), self.mode))
        if hmac_key is None and ed25519_seed is None and self.mode != "disabled":
            raise ValueError("an HMAC key or an Ed25519 seed is needed to sign jobs")
        self.local = local
        self.timeout_s = timeout_s
        self.sleep = sleep
        self.clock = clock
        self.opener = opener
        self.retry_delays = tuple(retry_delays)

    # Signing ------------------------------------------------------------------------------

    def sign(self, body):
        """``body`` with its timestamp, audience and signature (over the canonical form)."""
        signed = dict(body)
        signed["timestamp"] = int(self.clock())
        if self.audience:
            signed["audience"] = self.audience
        if self.ed25519_seed is not None:
            from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
            signed["sig_alg"] = "ed25519"
            signed["key_id"] = self.key_id
            key = Ed25519PrivateKey.from_private_bytes(self.ed25519_seed)
            signed["signature"] = key.sign(canonical(signed).encode()).hex()
        else:
            digest = _hmac.new(self.hmac_key, canonical(signed).encode(), hashlib.sha256)
            signed["signature"] = digest.hexdigest()
        return signed

    # Transport ----------------------------------------------------------------------------

    def _post(self, body):
        data = json.dumps(self.sign(body)).encode()
        req = urllib.request.Request(self.base_url + "/auction", data=data, method="POST",
                                     headers={"content-type": "application/json"})
        try:
            with self.opener(req, timeout=self.timeout_s + 5) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                doc = json.loads(raw or b"null")
            except ValueError:
                doc = {"message": raw.decode(errors="replace")}
            return e.code, doc

    def submit(self, body):
        """Posts an Offgrid job body, retrying 503s and connection errors; returns the
        completed answer or raises the typed error."""
        delays = list(self.retry_delays)
        while True:
            try:
                status, doc = self._post(body)
            except (urllib.error.URLError, ConnectionError, socket.timeout, OSError) as e:
                if not delays:
                    raise OffgridUnavailable("the node is unreachable: %s" % e) from e
                self.sleep(delays.pop(0))
                continue
            if status == 200:
                return doc
            doc = doc if isinstance(doc, dict) else {}
            if status == 503 and delays:
                self.sleep(delays.pop(0))
                continue
            cls = _BY_STATUS.get(status, OffgridError)
            raise cls(doc.get("message") or "HTTP %d" % status, status=status,
                      code=doc.get("error"), body=doc)

    def run(self, core_job, job_id=None):
        """Runs a Core job per the mode and returns the answer in Core's shape."""
        if self.mode == "disabled":
            return self._local(core_job, None)
        body = to_offgrid(core_job, job_id=job_id, timeout_s=core_job.get("timeout_s"))
        try:
            return from_offgrid(self.submit(body))
        except OffgridUnavailable as e:
            if self.mode == "auto" and self.local is not None:
                return self._local(core_job, e)
            raise

    def _local(self, core_job, why):
        if self.local is None:
            raise OffgridDisabled("OFFGRID_MODE=disabled and no local fallback is set")
        out = self.local(core_job)
        return {"ok": True, "provider": "local", "text": out if isinstance(out, str) else json.dumps(out),
                "output": out, "usage": {}, "fallback_reason": str(why) if why else None}
