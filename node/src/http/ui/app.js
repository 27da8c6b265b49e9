// The dashboard's shell: navigation between pages, the live stream, the token dialog.
// Plain ES modules, no build step: what the node serves is what is committed.

import { connect, forgetToken, get, on, onTokenNeeded, setToken, token } from './api.js';
import { shortId } from './util.js';
import * as overview from './overview.js';
import * as peers from './peers.js';
import * as jobs from './jobs.js';
import * as storage from './storage.js';
import * as ledger from './ledger.js';
import * as radio from './radio.js';

const PAGES = {
  overview, peers, jobs, storage, ledger,
  radio: { mount: radio.mountRadio },
  mesh: { mount: radio.mountMesh },
};

/** How often the open page reads the node again, besides live events. */
const POLL_MS = 5000;

let current = null;
let timer = null;

function show() {
  const name = (location.hash.replace(/^#\/?/, '') || 'overview').split('/')[0];
  const page = PAGES[name] || PAGES.overview;
  if (current && current.dispose) current.dispose();
  clearInterval(timer);
  for (const a of document.querySelectorAll('#nav a')) {
    a.classList.toggle('active', a.dataset.page === name);
    if (a.dataset.page === name) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  }
  const main = document.getElementById('main');
  main.replaceChildren();
  main.dataset.page = name;
  current = page.mount(main) || {};
  if (current.refresh) {
    timer = setInterval(() => { if (!document.hidden) current.refresh(); }, POLL_MS);
  }
}

function tokenDialog() {
  const dialog = document.getElementById('token-dialog');
  const input = document.getElementById('token-input');
  const error = document.getElementById('token-error');
  const remember = document.getElementById('token-remember');
  let resolve = null;
  const finish = (t) => { if (resolve) { resolve(t); resolve = null; } };
  document.getElementById('token-form').addEventListener('submit', () => {
    setToken(input.value, remember.checked);
    input.value = '';
    finish(token());
  });
  document.getElementById('token-cancel').addEventListener('click', () => { dialog.close(); finish(null); });
  document.getElementById('token-forget').addEventListener('click', () => { forgetToken(); dialog.close(); finish(null); });
  dialog.addEventListener('close', () => finish(token() || null));
  const ask = (why) => new Promise((res) => {
    resolve = res;
    error.hidden = !why;
    error.textContent = why || '';
    if (!dialog.open) dialog.showModal();
    input.focus();
  });
  onTokenNeeded(ask);
  document.getElementById('token-button').addEventListener('click', () => ask(''));
}

async function identity() {
  try {
    const s = await get('/status');
    const me = document.getElementById('me');
    me.textContent = shortId(s.peer_id);
    me.title = s.peer_id;
    document.title = `Offgrid ${shortId(s.peer_id)}`;
  } catch (_) { /* shown by the pages */ }
}

function liveState(state) {
  const pill = document.getElementById('live');
  pill.textContent = state;
  pill.className = 'pill ' + (state === 'live' ? 'on' : 'off');
  document.body.dataset.live = state;
}

window.addEventListener('hashchange', show);
window.addEventListener('DOMContentLoaded', () => {
  tokenDialog();
  identity();
  on('hello', () => identity());
  connect(liveState);
  show();
});
