// Drives one node's dashboard in Debian's Chromium (headless, kept off the network) against
// three real offgrid-node processes that tests/tests/dashboard.rs started. Prints one JSON
// line with what it saw; exits non-zero on the first step that fails.
//
//   node dashboard.mjs CONFIG.json
//
// CONFIG: {"url": dashboard of node A, "token": A's token, "peers": [B, C peer ids],
//          "second_api": B's API URL, "me": A's peer id, "file": a small file on A's disk,
//          "shots": directory for screenshots, "chromium": path, "timeout_ms": per step}

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const cfg = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const T = cfg.timeout_ms || 20000;
const PAGES = ['overview', 'peers', 'jobs', 'storage', 'ledger', 'radio', 'mesh'];
const out = { ok: false, steps: [], shots: [], console_errors: [] };
const step = (name, extra) => { out.steps.push({ name, at_ms: Date.now() - t0, ...extra }); };
const t0 = Date.now();

// Flags that keep Chromium off the network: no background fetches, no component or safe
// browsing updates, no sync, no QUIC, no DNS prefetch; and a proxy that refuses everything
// but loopback, so even a stray request cannot leave the machine.
const browser = await chromium.launch({
  executablePath: cfg.chromium || '/usr/bin/chromium',
  args: [
    '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
    '--disable-sync', '--disable-quic', '--no-first-run', '--disable-default-apps',
    '--disable-domain-reliability', '--disable-client-side-phishing-detection', '--disable-features=NetworkPrediction,OptimizationHints,Translate,MediaRouter',
    '--no-pings', '--metrics-recording-only', '--safebrowsing-disable-auto-update',
    '--proxy-server=http://127.0.0.1:9', '--proxy-bypass-list=<-loopback>;127.0.0.1',
  ],
});

/** Polls f (async) until it returns a truthy value or the deadline passes. */
async function until(what, f, ms = T) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f().catch(() => null);
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function shoot(page, name, width) {
  await page.waitForLoadState('networkidle').catch(() => {});
  const path = join(cfg.shots, `${name}-${width}.png`);
  await page.screenshot({ path, fullPage: true });
  out.shots.push(path);
}

async function open(page, name) {
  await page.goto(`${cfg.url}/#/${name}`);
  await page.waitForSelector(`main[data-page="${name}"]`, { timeout: T });
}

try {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 860 } });
  const page = await ctx.newPage();
  // The wrong token's 401 is expected: Chromium logs every failed request.
  page.on('console', (m) => { if (m.type() === 'error' && !/status of 401/.test(m.text())) out.console_errors.push(m.text()); });
  page.on('pageerror', (e) => out.console_errors.push(String(e)));
  // Nothing but the node: any other request fails the test.
  const foreign = [];
  await ctx.route((u) => !u.href.startsWith(cfg.url), (r) => { foreign.push(r.request().url()); r.abort(); });

  // Overview, and the live stream connects.
  await open(page, 'overview');
  await page.waitForSelector('#live:text("live")', { timeout: T });
  await page.waitForSelector('#ov-peer-id', { timeout: T });
  out.my_id = await page.textContent('#ov-peer-id');
  step('overview', { live: true });

  // Peers: both others, with a map.
  await open(page, 'peers');
  for (const p of cfg.peers) await page.waitForSelector(`#peers tr[data-peer="${p}"]`, { timeout: T });
  out.map_peers = await page.locator('#peer-map g.peer-node[data-peer]').count();
  out.short_ids = await page.locator('#peers code.peer').allTextContents();
  step('peers', { seen: cfg.peers.length });

  // Toggle off: the token dialog asks once; a second node's API then shows this node inactive.
  await open(page, 'overview');
  await page.waitForSelector('#toggle:not([disabled])', { timeout: T });
  await page.click('#toggle');
  await page.waitForSelector('#token-dialog[open]', { timeout: T });
  // A wrong token first: the node answers 401 and the dialog asks again.
  await page.fill('#token-input', 'not-the-token');
  await page.click('#token-form button[type=submit]');
  await page.waitForSelector('#token-error:not([hidden])', { timeout: T });
  out.wrong_token_message = await page.textContent('#token-error');
  await page.fill('#token-input', cfg.token);
  await page.click('#token-form button[type=submit]');
  await page.waitForSelector('#ov-active.bad', { timeout: T });
  const seen = await until('the second node to see this node inactive', async () => {
    const r = await fetch(`${cfg.second_api}/peers`);
    const v = await r.json();
    const me = v.peers.find((p) => p.peer_id === cfg.me);
    return me && me.active === false ? me : null;
  });
  out.second_node_sees_inactive = seen.active === false;
  step('toggle off', { second_node_active: seen.active });
  await shoot(page, 'overview-off', 1280);
  // And on again (no second prompt: the token is kept for the session).
  await page.click('#toggle');
  await page.waitForSelector('#ov-active.ok', { timeout: T });
  out.token_dialogs_after_first = await page.locator('#token-dialog[open]').count();
  step('toggle on');

  // Jobs: an echo job from the form, its receipt, and the live table.
  await open(page, 'jobs');
  await page.fill('#job-form textarea', '{"msg":"hello from chromium"}');
  await page.click('#run-job');
  await page.waitForSelector('#receipt-sig', { timeout: T });
  out.receipt_sig = await page.textContent('#receipt-sig');
  out.job_output = await page.textContent('#job-output');
  await page.waitForSelector('#jobs tr[data-state="completed"]', { timeout: T });
  step('job', { sig: out.receipt_sig.slice(0, 16) });

  // Storage: put a small file, then its shard health per host.
  await open(page, 'storage');
  await page.fill('#put-form input[name=path]', cfg.file);
  await page.click('#put-button');
  await page.waitForSelector('#host-health tbody tr', { timeout: T * 2 });
  out.asset = await page.getAttribute('#host-health', 'data-asset');
  out.health_rows = await page.locator('#host-health tbody tr').count();
  out.reachable = await page.textContent('#reachable-min');
  out.reachable_ok = (await page.getAttribute('#reachable-min', 'class')) === 'ok';
  step('put', { asset: out.asset, hosts: out.health_rows });
  // And get it back to another path on the node's disk.
  await page.fill('#get-form input[name=asset]', out.asset);
  await page.fill('#get-form input[name=out]', `${cfg.file}.back`);
  await page.click('#get-form button[type=submit]');
  await page.waitForSelector('#st-ops .op[data-state="done"]:has-text("hash verified")', { timeout: T * 2 });
  step('get');

  // Ledger: a transfer to a peer, final by the node's own witness.
  await open(page, 'ledger');
  await page.waitForSelector('#my-balance', { timeout: T });
  await page.fill('#send-form input[name=dst]', cfg.peers[0]);
  await page.fill('#send-form input[name=amount]', '1.5');
  await page.click('#send-form button[type=submit]');
  await page.waitForSelector('#send-msg:has-text("final")', { timeout: T });
  out.transfer = await page.textContent('#send-msg');
  step('transfer');

  // Every page at desktop width, then at a phone's.
  for (const name of PAGES) { await open(page, name); await settle(page); await shoot(page, name, 1280); }
  const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true, deviceScaleFactor: 2 });
  await phone.route((u) => !u.href.startsWith(cfg.url), (r) => { foreign.push(r.request().url()); r.abort(); });
  const p2 = await phone.newPage();
  for (const name of PAGES) {
    await open(p2, name);
    await settle(p2);
    out.phone_overflow = (out.phone_overflow || 0) + await p2.evaluate(() => (document.documentElement.scrollWidth > window.innerWidth + 1 ? 1 : 0));
    await shoot(p2, name, 390);
  }
  step('screenshots', { count: out.shots.length });
  out.foreign_requests = foreign;
  out.ok = true;
} catch (e) {
  out.error = String(e && e.stack || e);
} finally {
  out.elapsed_ms = Date.now() - t0;
  await browser.close().catch(() => {});
  console.log(JSON.stringify(out));
  process.exit(out.ok ? 0 : 1);
}

/** Waits until the page has drawn its data (no "Loading…" left, cards filled). */
async function settle(page) {
  await until('the page to draw', async () => {
    const empty = await page.evaluate(() => [...document.querySelectorAll('main .card')].some((c) => c.children.length < 2));
    return !empty;
  }, T).catch(() => {});
}
