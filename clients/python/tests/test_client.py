"""The client on a fake clock and a fake transport: modes, retries and their delays, typed
errors, signatures, and the mapping of jobs both ways."""

import hashlib
import hmac
import io
import json
import urllib.error

import pytest

import offgrid_client as oc

KEY = "k3y"


class Answer:
    def __init__(self, status, doc):
        self.status = status
        self._data = json.dumps(doc).encode()

    def read(self):
        return self._data

    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


class Node:
    """Answers from a script: each item a (status, doc) or an exception to raise."""

    def __init__(self, *script):
        self.script = list(script)
        self.bodies = []

    def __call__(self, req, timeout=None):
        self.bodies.append(json.loads(req.data))
        item = self.script.pop(0)
        if isinstance(item, Exception):
            raise item
        status, doc = item
        if status == 200:
            return Answer(status, doc)
        raise urllib.error.HTTPError(req.full_url, status, "x", {}, io.BytesIO(json.dumps(doc).encode()))


COMPLETED = {
    "status": "completed",
    "job_id": "j1",
    "result": {"ok": True, "output": "echo: Test", "host": "12D3KooWhost", "quote": 0.03,
               "offgrid_receipt": {"units": 1000, "metrics": {"compute_tokens": 3}}},
}


class Clock:
    def __init__(self):
        self.now = 1_800_000_000
        self.slept = []

    def sleep(self, s):
        self.slept.append(s)
        self.now += s

    def time(self):
        return self.now


def client(node, clock=None, **kw):
    clock = clock or Clock()
    kw.setdefault("mode", "offgrid")
    return oc.OffgridClient("http://node", hmac_key=KEY, opener=node, sleep=clock.sleep,
                            clock=clock.time, **kw)


def test_a_core_job_maps_to_an_offgrid_job_and_the_answer_back():
    body = oc.to_offgrid({"kind": "llm_call", "payload": {"prompt": "Test", "max_tokens": 100}}, job_id="j1")
    assert body["type"] == "compute" and body["job_id"] == "j1"
    assert body["payload"] == {"prompt": "Test", "max_tokens": 100}
    assert body["size"] == oc.estimate_size(body["payload"]) == 101
    out = oc.from_offgrid(COMPLETED)
    assert out["text"] == "echo: Test"
    assert out["usage"] == {"total_tokens": 3}
    assert out["provider"] == "offgrid" and out["host"] == "12D3KooWhost"
    assert oc.to_offgrid({"kind": "echo", "payload": {}})["type"] == "echo"


def test_the_signature_is_hmac_over_the_canonical_body_and_names_the_audience():
    node = Node((200, COMPLETED))
    c = client(node, audience="12D3KooWbroker")
    c.run({"kind": "llm_call", "payload": {"prompt": "Grüße"}}, job_id="j1")
    sent = node.bodies[0]
    assert sent["audience"] == "12D3KooWbroker"
    sig = sent.pop("signature")
    want = hmac.new(KEY.encode(), oc.canonical(sent).encode(), hashlib.sha256).hexdigest()
    assert sig == want
    assert oc.canonical({"b": 1, "a": "é"}) == '{"a":"é","b":1}'


def test_ed25519_signatures_verify_with_the_public_key():
    pytest.importorskip("cryptography")
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    seed = bytes(range(32))
    node = Node((200, COMPLETED))
    c = oc.OffgridClient("http://node", ed25519_seed=seed, key_id="core-1", mode="offgrid",
                         opener=node, sleep=lambda s: None)
    c.run({"payload": {"prompt": "x"}})
    sent = node.bodies[0]
    assert sent["sig_alg"] == "ed25519" and sent["key_id"] == "core-1"
    sig = bytes.fromhex(sent.pop("signature"))
    Ed25519PrivateKey.from_private_bytes(seed).public_key().verify(sig, oc.canonical(sent).encode())


def test_503_and_connection_errors_are_retried_after_2_4_and_8_seconds_with_one_job_id():
    clock = Clock()
    node = Node((503, {"error": "no_hosts", "message": "none"}), urllib.error.URLError("refused"),
                (503, {"error": "no_hosts", "message": "none"}), (200, COMPLETED))
    out = client(node, clock).run({"payload": {"prompt": "Test"}}, job_id="j1")
    assert out["text"] == "echo: Test"
    assert clock.slept == [2, 4, 8]
    assert {b["job_id"] for b in node.bodies} == {"j1"}, "a retry is the same job"
    # The timestamp is fresh on each try (the clock moved).
    assert [b["timestamp"] for b in node.bodies] == [1_800_000_000, 1_800_000_002, 1_800_000_006, 1_800_000_014]


def test_after_the_last_retry_the_error_is_typed():
    clock = Clock()
    node = Node(*[(503, {"error": "no_hosts", "message": "no host offers compute"})] * 4)
    with pytest.raises(oc.OffgridUnavailable) as e:
        client(node, clock).run({"payload": {"prompt": "x"}})
    assert e.value.status == 503 and e.value.code == "no_hosts"
    assert "compute" in str(e.value)
    assert clock.slept == [2, 4, 8]


@pytest.mark.parametrize("status,code,cls", [
    (400, "invalid_request", oc.OffgridBadRequest),
    (401, "invalid_signature", oc.OffgridAuthError),
    (402, "insufficient_funds", oc.OffgridPaymentRequired),
    (409, "conflict", oc.OffgridConflict),
    (502, "job_failed", oc.OffgridJobFailed),
    (504, "job_timeout", oc.OffgridTimeout),
    (500, "internal", oc.OffgridError),
])
def test_each_error_status_raises_its_type_without_a_retry(status, code, cls):
    clock = Clock()
    node = Node((status, {"error": code, "message": "m"}))
    with pytest.raises(cls) as e:
        client(node, clock).run({"payload": {"prompt": "x"}})
    assert e.value.code == code
    assert clock.slept == []


def test_auto_mode_falls_back_to_local_only_when_the_mesh_is_unavailable():
    local = lambda job: "local: " + job["payload"]["prompt"]
    node = Node(*[urllib.error.URLError("down")] * 4)
    out = client(node, mode="auto", local=local).run({"payload": {"prompt": "hi"}})
    assert out["provider"] == "local" and out["text"] == "local: hi"
    assert "unreachable" in out["fallback_reason"]
    # A refusal that retrying cannot fix is not hidden by the fallback.
    node = Node((401, {"error": "invalid_signature", "message": "bad"}))
    with pytest.raises(oc.OffgridAuthError):
        client(node, mode="auto", local=local).run({"payload": {"prompt": "hi"}})
    # With the mesh up, auto uses it.
    out = client(Node((200, COMPLETED)), mode="auto", local=local).run({"payload": {"prompt": "hi"}})
    assert out["provider"] == "offgrid"


def test_offgrid_mode_never_falls_back_and_disabled_never_calls_the_mesh(monkeypatch):
    local = lambda job: "local"
    with pytest.raises(oc.OffgridUnavailable):
        client(Node(*[urllib.error.URLError("down")] * 4), local=local).run({"payload": {"prompt": "x"}})
    node = Node()
    monkeypatch.setenv("OFFGRID_MODE", "disabled")
    c = oc.OffgridClient("http://node", opener=node, mode=None, local=local)
    assert c.run({"payload": {"prompt": "x"}})["provider"] == "local"
    assert node.bodies == []
    with pytest.raises(oc.OffgridDisabled):
        oc.OffgridClient("http://node", mode="disabled").run({"payload": {}})
    with pytest.raises(ValueError):
        oc.OffgridClient("http://node", hmac_key=KEY, mode="sometimes")
