"""The client against real offgrid-node processes (a broker and an echo host on loopback).

The node binary is $OFFGRID_NODE_BIN, else the workspace's target/debug/offgrid-node (built
by `cargo test --workspace`); the tests skip with the reason when neither exists."""

import json
import os
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

import offgrid_client as oc

KEY = "python-client-test-key"
ROOT = Path(__file__).resolve().parents[3]


def node_bin():
    for p in (os.environ.get("OFFGRID_NODE_BIN"), ROOT / "target" / "debug" / "offgrid-node"):
        if p and Path(p).is_file():
            return str(p)
    pytest.skip("no offgrid-node binary: build it or set OFFGRID_NODE_BIN")


def get(url):
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())


def wait(what, f, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = f()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError("never happened: " + what)


class Node:
    def __init__(self, *args, env=None):
        self.dir = tempfile.TemporaryDirectory()
        d = self.dir.name
        self.proc = subprocess.Popen(
            [node_bin(), "--data-dir", d, "--no-mdns", "--listen", "/ip4/127.0.0.1/tcp/0",
             "--api-listen", "127.0.0.1:0", *args],
            stdout=subprocess.DEVNULL, stderr=open(os.path.join(d, "node.log"), "w"),
            env={**os.environ, **(env or {})})
        url_file = Path(d) / "api.url"
        self.api = wait("api.url", lambda: url_file.exists() and url_file.read_text().endswith("\n")
                        and url_file.read_text().strip())
        status = get(self.api + "/status")
        self.peer_id = status["peer_id"]
        self.addr = wait("a listen address", lambda: get(self.api + "/status")["listen_addrs"])[0] + "/p2p/" + self.peer_id

    def stop(self):
        self.proc.kill()
        self.proc.wait()
        self.dir.cleanup()


@pytest.fixture(scope="module")
def mesh():
    host = Node()
    broker = Node("--bootstrap", host.addr, env={"OFFGRID_AUTH_KEY": KEY})
    wait("the broker to see the host", lambda: get(broker.api + "/status")["peers"]["active_hosts"] >= 1)
    yield broker, host
    broker.stop()
    host.stop()


def test_an_echo_job_completes_and_a_retry_is_answered_from_the_job_book(mesh):
    broker, host = mesh
    c = oc.OffgridClient(broker.api, hmac_key=KEY, audience=broker.peer_id, mode="offgrid")
    out = c.run({"kind": "echo", "payload": {"n": 1}}, job_id="py-1")
    assert out["provider"] == "offgrid" and out["ok"]
    assert out["output"] == {"n": 1}
    assert out["host"] == host.peer_id
    again = c.run({"kind": "echo", "payload": {"n": 1}}, job_id="py-1")
    assert again["receipt"] == out["receipt"], "the same job, answered once"


def test_the_nodes_refusals_arrive_as_typed_errors(mesh):
    broker, _ = mesh
    c = oc.OffgridClient(broker.api, hmac_key=KEY, audience="12D3KooWsomeoneElse", mode="offgrid")
    with pytest.raises(oc.OffgridAuthError) as e:
        c.run({"kind": "echo", "payload": {}})
    assert e.value.code == "invalid_signature"
    wrong = oc.OffgridClient(broker.api, hmac_key="not-the-key", mode="offgrid")
    with pytest.raises(oc.OffgridAuthError):
        wrong.run({"kind": "echo", "payload": {}})
    ok = oc.OffgridClient(broker.api, hmac_key=KEY, mode="offgrid")
    ok.run({"kind": "echo", "payload": {"a": 1}}, job_id="py-2")
    with pytest.raises(oc.OffgridConflict):
        ok.run({"kind": "echo", "payload": {"a": 2}}, job_id="py-2")


def test_no_host_for_compute_retries_then_auto_mode_runs_it_locally(mesh):
    broker, _ = mesh
    slept = []
    c = oc.OffgridClient(broker.api, hmac_key=KEY, mode="auto", sleep=slept.append,
                         local=lambda job: "local answer")
    out = c.run({"kind": "llm_call", "payload": {"prompt": "Test"}})
    assert out["provider"] == "local" and out["text"] == "local answer"
    assert slept == [2, 4, 8]
    assert "compute" in out["fallback_reason"]
