// The event viewer at /ui: plain JavaScript, no build step, no third-party code.
// Every request goes to this server's own API; the filters in the page's URL are the
// API's own query parameters, so a view is shared by sharing its link.
'use strict';

const FILTERS = ['application_name', 'event_kind', 'since', 'until', 'payload_contains'];
/// Parameters that may be given more than once: any of the values.
const REPEATABLE = new Set(['application_name', 'event_kind']);
const PAGE_PARAMETERS = [...FILTERS, 'order', 'page_size', 'page_token'];
/// Rows kept while following: older ones leave at the bottom.
const MAX_ROWS = 500;
const TOKEN_KEY = 'audit-viewer-token';
const RECONNECT_MS = 1000;

const $ = (id) => document.getElementById(id);
const state = {
  settings: null,
  token: sessionStorage.getItem(TOKEN_KEY) || '',
  events: [],
  ids: new Set(),
  nextPage: null,
  follow: null,
  selected: null,
  firstRowsShown: false,
};

// ---- The query: the page's URL, the form and the API share one set of parameters.

/// The page's parameters from a query string, repeatable ones as lists.
function readQuery(search) {
  const params = new URLSearchParams(search);
  const query = {};
  for (const name of PAGE_PARAMETERS) {
    const values = params.getAll(name).filter((value) => value !== '');
    if (values.length) query[name] = REPEATABLE.has(name) ? values : values[0];
  }
  return query;
}

/// The query string of `query` (only the names in `names`).
function queryString(query, names = PAGE_PARAMETERS) {
  const params = new URLSearchParams();
  for (const name of names) {
    const value = query[name];
    if (value === undefined) continue;
    for (const one of Array.isArray(value) ? value : [value]) params.append(name, one);
  }
  return params.toString();
}

function queryFromForm() {
  const query = {};
  for (const name of FILTERS) {
    const raw = $(name).value.trim();
    if (!raw) continue;
    query[name] = REPEATABLE.has(name)
      ? raw.split(',').map((one) => one.trim()).filter(Boolean)
      : raw;
  }
  if ($('order').value === 'asc') query.order = 'asc';
  const size = $('page_size').value.trim();
  if (size && Number(size) !== state.settings.default_page_size) query.page_size = size;
  return query;
}

function fillForm(query) {
  for (const name of FILTERS) {
    const value = query[name];
    $(name).value = value === undefined ? '' : [].concat(value).join(', ');
  }
  $('order').value = query.order === 'asc' ? 'asc' : 'desc';
  $('page_size').value = query.page_size || state.settings.default_page_size;
  $('page_size').max = state.settings.max_page_size;
}

function currentQuery() {
  return readQuery(location.search);
}

// ---- Talking to the API.

function authHeaders() {
  return state.token ? { Authorization: `Bearer ${state.token}` } : {};
}

class ApiError extends Error {
  constructor(status, body) {
    super(describeError(status, body));
    this.status = status;
  }
}

function describeError(status, body) {
  if (body && body.message) {
    const where = (body.details || []).map((detail) => (detail.field
      ? `${detail.field}: ${detail.problem}` : detail.problem));
    return `${status} ${body.error || ''}: ${body.message}${where.length ? ` (${where.join('; ')})` : ''}`;
  }
  return `the server answered ${status}`;
}

/// The answer's text; an error status is an `ApiError` with the body's message.
async function getText(path) {
  const response = await fetch(path, { headers: authHeaders() });
  const text = await response.text();
  if (!response.ok) throw new ApiError(response.status, parseOrNull(text));
  return text;
}

async function getJson(path) {
  return JSON.parse(await getText(path));
}

function parseOrNull(text) {
  try {
    return JSON.parse(text);
  } catch (_) {
    return null;
  }
}

function showStatus(text, isError = false) {
  const status = $('status');
  status.textContent = text;
  status.classList.toggle('error', isError);
}

// ---- Pages.

async function loadPage() {
  const query = currentQuery();
  fillForm(query);
  updateExportLinks(query);
  showStatus('Loading…');
  try {
    const page = await getJson(`/api/event?${queryString(query)}`);
    replaceRows(page.data);
    state.nextPage = page.next_page;
    $('next').disabled = page.next_page === null;
    $('previous').disabled = query.page_token === undefined;
    const shown = page.data.length;
    showStatus(shown ? `${shown} events` : 'No events match.');
    if (!state.firstRowsShown) {
      state.firstRowsShown = true;
      document.body.dataset.firstRowsMs = String(Math.round(performance.now()));
    }
  } catch (error) {
    replaceRows([]);
    $('next').disabled = true;
    showStatus(error.message, true);
    if (error.status === 401 || error.status === 403) $('token-form').hidden = false;
  }
}

function navigate(query, replace = false) {
  const url = `/ui${queryString(query) ? `?${queryString(query)}` : ''}`;
  if (replace) history.replaceState(null, '', url);
  else history.pushState(null, '', url);
  return loadPage();
}

function nextPage() {
  if (state.nextPage === null) return;
  stopFollowing();
  navigate({ ...currentQuery(), page_token: String(state.nextPage) });
}

/// The page before this one: the same filters the other way round from this page's
/// first event, then that page's own token (one beyond its first event), so that the
/// URL says which page it is.
async function previousPage() {
  const query = currentQuery();
  const first = state.events[0];
  stopFollowing();
  if (query.page_token === undefined) return;
  if (!first) return navigate(withoutToken(query));
  const ascending = query.order === 'asc';
  const reverse = { ...query, order: ascending ? 'desc' : 'asc', page_token: String(first.id) };
  try {
    const page = await getJson(`/api/event?${queryString(reverse)}`);
    const size = Number(query.page_size || state.settings.default_page_size);
    if (page.data.length < size || page.next_page === null) {
      return navigate(withoutToken(query));
    }
    const start = page.data[page.data.length - 1].id;
    return navigate({ ...query, page_token: String(ascending ? start - 1 : start + 1) });
  } catch (error) {
    showStatus(error.message, true);
  }
}

function withoutToken(query) {
  const copy = { ...query };
  delete copy.page_token;
  return copy;
}

// ---- The table.

function replaceRows(events) {
  state.events = events.slice();
  state.ids = new Set(events.map((event) => event.id));
  $('events').tBodies[0].replaceChildren(...events.map(rowOf));
}

/// Followed events go on top (newest first); past [`MAX_ROWS`] the oldest leave at the
/// bottom, so a fast stream never grows the page without end. A reader scrolled down
/// to a row keeps it where it is: the page scrolls by what was added above it (the
/// browser's own scroll anchoring is off, to make this exact).
function prependEvents(events) {
  if (!events.length) return;
  const body = $('events').tBodies[0];
  const anchor = body.firstElementChild;
  const anchorTop = anchor && anchor.getBoundingClientRect().top;
  const fragment = document.createDocumentFragment();
  for (const event of events.slice().reverse()) {
    state.ids.add(event.id);
    fragment.append(rowOf(event));
  }
  body.insertBefore(fragment, body.firstChild);
  state.events = events.slice().reverse().concat(state.events);
  while (state.events.length > MAX_ROWS) {
    state.ids.delete(state.events.pop().id);
    body.lastChild.remove();
  }
  // What was on top before moved down by exactly what was added above it; rows
  // removed at the bottom are below the reader.
  if (window.scrollY > 0 && anchor && anchor.isConnected) {
    window.scrollBy(0, anchor.getBoundingClientRect().top - anchorTop);
  }
}

function rowOf(event) {
  const row = document.createElement('tr');
  row.tabIndex = 0;
  row.dataset.id = String(event.id);
  const time = document.createElement('td');
  time.textContent = event.event_ts;
  time.title = `local: ${localTime(event.event_ts)}`;
  row.append(time, cell(event.application_name), cell(event.event_kind), cell(summary(event.payload)));
  row.addEventListener('click', () => openDetail(event));
  row.addEventListener('keydown', (key) => {
    if (key.key === 'Enter' || key.key === ' ') {
      key.preventDefault();
      openDetail(event);
    } else if (key.key === 'ArrowDown' && row.nextElementSibling) {
      key.preventDefault();
      row.nextElementSibling.focus();
    } else if (key.key === 'ArrowUp' && row.previousElementSibling) {
      key.preventDefault();
      row.previousElementSibling.focus();
    }
  });
  return row;
}

function cell(text) {
  const td = document.createElement('td');
  td.textContent = text;
  return td;
}

function summary(payload) {
  const text = JSON.stringify(payload);
  return text.length > 200 ? `${text.slice(0, 199)}…` : text;
}

function localTime(eventTs) {
  const date = new Date(eventTs);
  return Number.isNaN(date.getTime()) ? eventTs : date.toString();
}

// ---- One event.

function openDetail(event) {
  state.selected = event;
  $('detail-id').textContent = String(event.id);
  $('detail-time').textContent = `${event.event_ts} (local: ${localTime(event.event_ts)})`;
  $('detail-app').textContent = event.application_name;
  $('detail-kind').textContent = event.event_kind;
  $('detail-payload').textContent = JSON.stringify(event.payload, null, 2);
  $('detail-curl').textContent = curlFor(currentQuery());
  $('verify-result').textContent = '';
  $('verify-result').className = '';
  $('verify').disabled = !state.settings.integrity;
  $('detail').hidden = false;
  $('close-detail').focus();
}

function closeDetail() {
  $('detail').hidden = true;
  const row = state.selected && document.querySelector(`tr[data-id="${state.selected.id}"]`);
  if (row) row.focus();
}

function curlFor(query) {
  const url = `${location.origin}/api/event${queryString(query) ? `?${queryString(query)}` : ''}`;
  const auth = state.settings.auth_mode === 'tokens' ? `-H "Authorization: Bearer $AUDIT_TOKEN" ` : '';
  return `curl -s ${auth}'${url.replace(/'/g, "'\\''")}'`;
}

async function copyCurl() {
  const text = $('detail-curl').textContent;
  try {
    await navigator.clipboard.writeText(text);
    showStatus('curl copied.');
  } catch (_) {
    const range = document.createRange();
    range.selectNodeContents($('detail-curl'));
    getSelection().removeAllRanges();
    getSelection().addRange(range);
    showStatus('Select and copy the curl line (the clipboard is not available here).');
  }
}

// ---- Export.

function updateExportLinks(query) {
  for (const format of ['ndjson', 'csv']) {
    const link = $(`export-${format}`);
    link.href = `/api/event/export?${queryString({ ...query, format }, [...FILTERS, 'format'])}`;
    link.download = `events.${format}`;
  }
}

/// With tokens on, a link cannot carry the token: the export is fetched with it and
/// handed to the browser as a file.
async function exportWithToken(click) {
  if (state.settings.auth_mode !== 'tokens') return;
  click.preventDefault();
  const link = click.currentTarget;
  showStatus('Exporting…');
  try {
    const response = await fetch(link.href, { headers: authHeaders() });
    if (!response.ok) throw new ApiError(response.status, await response.json().catch(() => null));
    const file = URL.createObjectURL(await response.blob());
    const save = document.createElement('a');
    save.href = file;
    save.download = link.download;
    save.click();
    setTimeout(() => URL.revokeObjectURL(file), 10000);
    showStatus('Export saved.');
  } catch (error) {
    showStatus(error.message, true);
  }
}

// ---- Following the live tail.

/// Follows `GET /api/event/stream` with the page's filters. The stream is opened
/// before the first page is read (the server fixes where a stream starts before it
/// answers), so every event is on the page or in the stream, and one in both is shown
/// once (by id). After a drop it resumes from the last position it got.
async function startFollowing() {
  const query = withoutToken(currentQuery());
  delete query.order;
  const follow = { controller: new AbortController(), last: null, received: 0, newest: null, state: 'connecting' };
  state.follow = follow;
  follow.timer = setInterval(() => showFollowStatus(follow), 500);
  let firstPageLoaded = false;
  while (state.follow === follow) {
    // Nothing to resume from (the log was empty when the stream opened): start over,
    // the newest page then the stream.
    if (follow.last === null) firstPageLoaded = false;
    try {
      const headers = authHeaders();
      if (follow.last !== null) headers['Last-Event-ID'] = follow.last;
      const path = `/api/event/stream?${queryString(query, FILTERS)}`;
      const response = await fetch(path, { headers, signal: follow.controller.signal });
      if (!response.ok) {
        const error = new ApiError(response.status, await response.json().catch(() => null));
        if (response.status < 500 && response.status !== 429) {
          showStatus(error.message, true);
          stopFollowing();
          return;
        }
        throw error;
      }
      if (!firstPageLoaded) {
        firstPageLoaded = true;
        await navigate(query, true);
      }
      follow.state = 'live';
      await readStream(response, follow);
    } catch (error) {
      if (state.follow !== follow) return;
      follow.error = error.message;
    }
    if (state.follow !== follow) return;
    follow.state = 'reconnecting';
    showFollowStatus(follow);
    await new Promise((resolve) => setTimeout(resolve, RECONNECT_MS));
  }
}

async function readStream(response, follow) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done || state.follow !== follow) return;
    buffer += value;
    const fresh = [];
    let end;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const event = takeMessage(buffer.slice(0, end), follow);
      buffer = buffer.slice(end + 2);
      if (event && !state.ids.has(event.id) && !fresh.some((one) => one.id === event.id)) {
        fresh.push(event);
      }
    }
    follow.received += fresh.length;
    prependEvents(fresh);
  }
}

/// One SSE message: notes its position and returns its event, if it has one.
function takeMessage(block, follow) {
  let id = null;
  const data = [];
  for (const line of block.split('\n')) {
    if (line.startsWith('id:')) id = line.slice(3).trim();
    else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
  }
  // An id alone is where the stream is: resume after it.
  if (id !== null) follow.last = id;
  if (!data.length) return null;
  const event = JSON.parse(data.join('\n'));
  follow.newest = event;
  return event;
}

function showFollowStatus(follow) {
  if (state.follow !== follow) return;
  let text = follow.state === 'live' ? `following: ${follow.received} new` : `${follow.state}…`;
  if (follow.newest) {
    const behind = (Date.now() - new Date(follow.newest.event_ts).getTime()) / 1000;
    text += `; the newest is ${Math.max(0, behind).toFixed(1)} s behind now`;
  }
  if (follow.state === 'reconnecting' && follow.error) text += ` (${follow.error})`;
  $('follow-status').textContent = text;
  document.body.dataset.follow = follow.state;
}

function stopFollowing() {
  const follow = state.follow;
  if (!follow) return;
  state.follow = null;
  follow.controller.abort();
  clearInterval(follow.timer);
  $('follow').checked = false;
  $('follow-status').textContent = '';
  delete document.body.dataset.follow;
}

// ---- Checking an event against a signed checkpoint, in the browser.

/// Fetches the latest signed checkpoint and the event's proof at its size, then
/// checks, with WebCrypto alone: that the leaf content is the event shown; that it
/// hashes, through the inclusion path, to the checkpoint's root; and that the
/// checkpoint is signed by the verifier key.
async function verifySelected() {
  const event = state.selected;
  const key = $('verifier-key').value.trim();
  const lines = [];
  const say = (ok, text) => lines.push(`${ok ? 'PASS' : 'FAIL'}  ${text}`);
  $('verify-result').textContent = 'Checking…';
  let verdict = false;
  try {
    if (!key) throw new Error('a verifier key is needed (the log operator gives it)');
    const note = await getText('/api/checkpoint');
    const checkpoint = parseCheckpoint(note);
    const proof = await getJson(`/api/event/${event.id}/proof?tree_size=${checkpoint.size}`);
    const content = base64Bytes(proof.leaf_content);
    const fields = parseLeafContent(content);
    const sameEvent = fields.eventTsMicros === timestampMicros(event.event_ts)
      && fields.applicationName === event.application_name
      && fields.eventKind === event.event_kind
      && canonicalJson(JSON.parse(fields.payload)) === canonicalJson(event.payload);
    say(sameEvent, 'the leaf content is the event shown (time, application, kind, payload)');
    const digest = await sha256(content);
    const leaf = concat([new Uint8Array([1]), int64Bytes(event.id), digest]);
    const leafHash = await sha256(concat([new Uint8Array([0]), leaf]));
    const sealed = equalBytes(leafHash, base64Bytes(proof.leaf_hash));
    say(sealed, `the event as stored hashes to the leaf sealed at index ${proof.leaf_index}`);
    const root = await rootFromInclusion(leafHash, proof.leaf_index, proof.tree_size,
      proof.inclusion_path.map(base64Bytes));
    const included = root !== null && equalBytes(root, checkpoint.root);
    say(included, `its inclusion path leads to the root of the checkpoint of ${checkpoint.size} events`);
    const signed = await verifyNote(note, key);
    say(signed, `the checkpoint "${checkpoint.origin}" is signed by ${key.split('+')[0]}`);
    verdict = sameEvent && sealed && included && signed;
  } catch (error) {
    say(false, error.message);
  }
  lines.unshift(verdict ? 'VERIFIED: this event is in the signed log, unchanged.'
    : 'NOT VERIFIED: see below.');
  $('verify-result').textContent = lines.join('\n');
  $('verify-result').className = verdict ? 'verified' : 'failed';
}

/// A C2SP tlog-checkpoint: origin, tree size and base64 root, each on its own line.
function parseCheckpoint(note) {
  const [origin, size, root] = note.split('\n');
  if (!origin || !/^[0-9]+$/.test(size || '') || !root) throw new Error('the checkpoint is malformed');
  return { origin, size: Number(size), root: base64Bytes(root) };
}

/// A C2SP signed-note verified against a verifier key `name+hash+base64(0x01 || key)`.
async function verifyNote(note, verifierKey) {
  // name+hash+key: the name has no '+', the base64 key may.
  const [name, hashHex, ...keyParts] = verifierKey.split('+');
  const keyBase64 = keyParts.join('+');
  const keyData = base64Bytes(keyBase64 || '');
  if (!name || !/^[0-9a-f]{8}$/.test(hashHex || '') || keyData.length !== 33 || keyData[0] !== 1) {
    throw new Error('the verifier key is not an Ed25519 note verifier key (name+hash+key)');
  }
  const expectedHash = (await sha256(concat([utf8(`${name}\n`), keyData]))).slice(0, 4);
  if (!equalBytes(expectedHash, hexBytes(hashHex))) throw new Error('the verifier key\'s hash does not match its key');
  const split = note.indexOf('\n\n');
  if (split < 0) throw new Error('the checkpoint has no signatures');
  const text = utf8(note.slice(0, split + 1));
  const publicKey = await crypto.subtle.importKey('raw', keyData.slice(1), { name: 'Ed25519' }, false, ['verify']);
  for (const line of note.slice(split + 2).split('\n')) {
    const match = /^\u2014 (\S+) (\S+)$/.exec(line);
    if (!match || match[1] !== name) continue;
    const signature = base64Bytes(match[2]);
    if (signature.length !== 68 || !equalBytes(signature.slice(0, 4), expectedHash)) continue;
    if (await crypto.subtle.verify({ name: 'Ed25519' }, publicKey, signature.slice(4), text)) return true;
  }
  return false;
}

/// RFC 9162, 2.1.3.2: the root an inclusion path leads to, or null for a bad proof.
async function rootFromInclusion(leafHash, index, size, path) {
  if (index >= size) return null;
  let fn = index;
  let sn = size - 1;
  let hash = leafHash;
  for (const sibling of path) {
    if (sn === 0) return null;
    if (fn % 2 === 1 || fn === sn) {
      hash = await nodeHash(sibling, hash);
      if (fn % 2 === 0) {
        while (fn % 2 === 0 && fn !== 0) {
          fn = Math.floor(fn / 2);
          sn = Math.floor(sn / 2);
        }
      }
    } else {
      hash = await nodeHash(hash, sibling);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  return sn === 0 ? hash : null;
}

function nodeHash(left, right) {
  return sha256(concat([new Uint8Array([1]), left, right]));
}

/// The leaf content (README, "The leaf"): event_ts, application, kind, payload, token.
function parseLeafContent(bytes) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let at = 8;
  const text = () => {
    const length = view.getUint32(at);
    const value = new TextDecoder('utf-8', { fatal: true }).decode(bytes.slice(at + 4, at + 4 + length));
    at += 4 + length;
    return value;
  };
  const fields = { eventTsMicros: view.getBigInt64(0) };
  fields.applicationName = text();
  fields.eventKind = text();
  fields.payload = text();
  fields.tokenName = bytes[at] === 1 ? (at += 1, text()) : null;
  return fields;
}

/// Microseconds since 1970 of an RFC 3339 UTC time with up to 6 fractional digits.
function timestampMicros(eventTs) {
  const match = /^(.*?)(?:\.(\d{1,6}))?(Z|[+-]\d\d:\d\d)$/.exec(eventTs);
  if (!match) return null;
  const seconds = Date.parse(`${match[1]}${match[3]}`);
  const fraction = (match[2] || '').padEnd(6, '0');
  return BigInt(seconds) * 1000n + BigInt(fraction);
}

/// JSON with object keys sorted: two texts of one value compare equal.
function canonicalJson(value) {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value && typeof value === 'object') {
    return `{${Object.keys(value).sort().map((key) => `${JSON.stringify(key)}:${canonicalJson(value[key])}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

async function sha256(bytes) {
  return new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
}

function int64Bytes(value) {
  const bytes = new Uint8Array(8);
  new DataView(bytes.buffer).setBigInt64(0, BigInt(value));
  return bytes;
}

function concat(parts) {
  const out = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

function equalBytes(a, b) {
  return a.length === b.length && a.every((byte, at) => byte === b[at]);
}

function base64Bytes(text) {
  const binary = atob(text);
  return Uint8Array.from(binary, (char) => char.charCodeAt(0));
}

function hexBytes(hex) {
  return Uint8Array.from(hex.match(/../g), (pair) => parseInt(pair, 16));
}

function utf8(text) {
  return new TextEncoder().encode(text);
}

// ---- Start.

async function start() {
  try {
    state.settings = await getJson('/ui/settings.json');
  } catch (error) {
    showStatus(error.message, true);
    return;
  }
  if (state.settings.verifier_key) $('verifier-key').value = state.settings.verifier_key;
  $('follow').disabled = !state.settings.integrity;
  if (!state.settings.integrity) $('follow').parentElement.title = 'the live tail needs tamper evidence on';
  $('token').value = state.token;
  $('token-form').hidden = state.settings.auth_mode !== 'tokens';
  $('token-form').addEventListener('submit', (submit) => {
    submit.preventDefault();
    state.token = $('token').value.trim();
    sessionStorage.setItem(TOKEN_KEY, state.token);
    stopFollowing();
    loadPage();
  });
  $('filters').addEventListener('submit', (submit) => {
    submit.preventDefault();
    stopFollowing();
    navigate(queryFromForm());
  });
  $('clear').addEventListener('click', () => {
    stopFollowing();
    navigate({});
  });
  $('next').addEventListener('click', nextPage);
  $('previous').addEventListener('click', previousPage);
  $('follow').addEventListener('change', () => {
    if ($('follow').checked) startFollowing();
    else stopFollowing();
  });
  for (const format of ['ndjson', 'csv']) $(`export-${format}`).addEventListener('click', exportWithToken);
  $('close-detail').addEventListener('click', closeDetail);
  $('copy-curl').addEventListener('click', copyCurl);
  $('verify').addEventListener('click', verifySelected);
  document.addEventListener('keydown', (key) => {
    if (key.key === 'Escape' && !$('detail').hidden) closeDetail();
  });
  window.addEventListener('popstate', () => {
    stopFollowing();
    loadPage();
  });
  await loadPage();
}

start();
