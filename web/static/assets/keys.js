// The API keys page: create a key (name, spend cap, expiry, the functions it
// may call picked from the catalog, a rate limit, alert thresholds), list
// keys with their last use, expiry, scope, limits and spend at a glance,
// edit a key's settings, rotate a key with a grace period for the old one,
// and revoke. The server
// checks every field; this module only turns the form into the request and
// the answers into text. No amount is computed here.

import { api, asList, query, Problem } from './api.js';
import { h, mount, field, formError, showErrors, clearErrors, busy, toast, copyButton, fmtTime, button } from './dom.js';
import { state, forgetKey } from './state.js';
import { moneyString } from './money.js';
import { spendText } from './billing.js';
import { parseThresholds, thresholdsText, explainUnknownThresholds } from './alerts.js';

const enc = encodeURIComponent;

// ---- Helpers (unit-tested in TestFrontEndUnits) ----------------------------

// localToRFC3339 turns a datetime-local value ("2027-01-31T09:30", the
// reader's local time) into RFC 3339 in UTC ("2027-01-31T08:30:00Z"). An
// empty value is undefined (the field is left out); a value the browser
// cannot read goes as it was, so the server names it.
export function localToRFC3339(value) {
  const v = String(value || '').trim();
  if (!v) return undefined;
  const d = new Date(v);
  if (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2})?$/.test(v) || Number.isNaN(d.getTime())) return v;
  return d.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

// localInput formats a Date as a datetime-local value in the reader's time.
export function localInput(d) {
  const p = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}`;
}

// parseWhole turns a typed whole number into a number; anything else goes
// as typed (the server names it in its field error); empty is undefined.
export function parseWhole(text) {
  const t = String(text ?? '').trim();
  if (!t) return undefined;
  return /^\d+$/.test(t) ? Number(t) : t;
}

// inText says how far ahead a time is: "in 3 days", "in 5 hours", "in 1 minute".
export function inText(ms) {
  const unit = (n, u) => `in ${n} ${u}${n === 1 ? '' : 's'}`;
  if (ms >= 2 * 86400e3) return unit(Math.floor(ms / 86400e3), 'day');
  if (ms >= 2 * 3600e3) return unit(Math.floor(ms / 3600e3), 'hour');
  return unit(Math.max(1, Math.ceil(ms / 60e3)), 'minute');
}

// expiryState reads a key's expires_at at now: {state: 'never' | 'expired'
// | 'soon' (within 7 days) | 'later', text}.
export function expiryState(expiresAt, now = Date.now()) {
  if (!expiresAt) return { state: 'never', text: 'Never' };
  const t = Date.parse(expiresAt);
  if (Number.isNaN(t)) return { state: 'later', text: String(expiresAt) };
  if (t <= now) return { state: 'expired', text: 'expired' };
  if (t - now <= 7 * 86400e3) return { state: 'soon', text: `expires ${inText(t - now)}` };
  return { state: 'later', text: `expires ${inText(t - now)}` };
}

// graceActive reports whether a rotated key's old secret still works at now.
export function graceActive(previousExpiresAt, now = Date.now()) {
  const t = Date.parse(previousExpiresAt || '');
  return !Number.isNaN(t) && t > now;
}

// scopeText shows allowed_functions for reading: "All functions" when empty.
export function scopeText(list) {
  if (!Array.isArray(list)) return '—';
  return list.length ? list.join(', ') : 'All functions';
}

// rateText shows rate_limit_per_second: "10/s", or "Platform default".
export function rateText(n) {
  return n === null || n === undefined ? 'Platform default' : `${n}/s`;
}

// graceText names a grace period in seconds: "none", "1 hour", "90 seconds".
export function graceText(seconds) {
  const n = Number(seconds);
  if (!n) return 'none';
  for (const [size, u] of [[86400, 'day'], [3600, 'hour'], [60, 'minute']]) {
    if (n % size === 0) return `${n / size} ${u}${n / size === 1 ? '' : 's'}`;
  }
  return `${n} seconds`;
}

// newFields are the fields of "API keys, extended"; a server without them
// refuses them as unknown.
const newFields = { expires_at: 'key expiry is', allowed_functions: 'function scopes are', rate_limit_per_second: 'per-key rate limits are' };

// explainKeyProblem rewrites a create refusal for reading: an "unknown
// field" refusal of a new field (a server without it) becomes a plain
// sentence on the field, and allowed_functions[i] errors name the function.
export function explainKeyProblem(e, allowed = []) {
  if (!(e instanceof Problem)) return e;
  explainUnknownThresholds(e);
  for (const [f, what] of Object.entries(newFields)) {
    if (/not a known field/i.test(e.fields[f] || '')) e.fields[f] = `${what} not available on this server yet; leave it empty`;
  }
  for (const [k, msg] of Object.entries(e.fields)) {
    const m = /^allowed_functions\[(\d+)\]$/.exec(k);
    if (m && allowed[Number(m[1])] !== undefined) e.fields[k] = `${msg}: ${allowed[Number(m[1])]}`;
  }
  return e;
}

// ---- The page -------------------------------------------------------------

export async function keysPage(main, _p, ctx) {
  const list = h('div', { id: 'keys-list' });
  const fresh = h('div', { id: 'new-key-slot' });
  const err = formError();
  const submit = h('button', { type: 'submit', class: 'btn btn-primary', id: 'create-key' }, 'Create key');
  const expires = field({ label: 'Expires (optional)', name: 'expires_at', type: 'datetime-local', hint: 'Your local time; empty: never. Calls with an expired key get 401 key_expired.',
    attrs: { id: 'key-expires' } });
  const expiresInput = expires.querySelector('input');
  const expiresUTC = h('p', { class: 'hint mono', id: 'key-expires-utc', 'aria-live': 'polite' });
  const syncUTC = () => { const v = localToRFC3339(expiresInput.value); expiresUTC.textContent = v ? `Sent as ${v}` : ''; };
  expiresInput.addEventListener('input', syncUTC);
  expiresInput.addEventListener('change', syncUTC);
  const presets = h('div', { class: 'preset-row' }, [30, 90, 365].map((days) => button(`In ${days} days`, () => {
    expiresInput.value = localInput(new Date(Date.now() + days * 86400e3));
    syncUTC();
  }, { class: 'btn btn-small', dataset: { expiresIn: String(days) } })));
  expires.insertBefore(h('div', null, presets, expiresUTC), expires.querySelector('.field-error'));
  const scopes = scopePicker(ctx);
  const form = h('form', { class: 'form inline-form', id: 'key-form', novalidate: true }, err,
    h('div', { class: 'grid-2' },
      field({ label: 'Name', name: 'name', required: true, hint: 'Where it is used, e.g. “mobile app”.', attrs: { maxlength: 100, autocomplete: 'off', id: 'key-name' } }),
      field({ label: 'Monthly spend cap (optional)', name: 'monthly_spend_cap', hint: 'In USD, e.g. 25.00. Calls get 402 once the month’s cost reaches it.', attrs: { inputmode: 'decimal', autocomplete: 'off', id: 'key-cap' } }),
      expires,
      field({ label: 'Rate limit (optional)', name: 'rate_limit_per_second', hint: 'Calls per second for this key, at most the platform default; empty: the platform default. Each function’s own limit applies too.',
        attrs: { inputmode: 'numeric', autocomplete: 'off', id: 'key-rate-limit', placeholder: 'Platform default' } }),
      field({ label: 'Alert thresholds (optional)', name: 'alert_thresholds', hint: 'Percents of the key’s cap at which a usage.threshold_reached webhook is sent, e.g. 50, 80, 100. Empty: 80 and 100.',
        attrs: { autocomplete: 'off', id: 'key-thresholds', placeholder: '80, 100' } })),
    scopes.el,
    submit);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    clearErrors(form);
    const fd = new FormData(form);
    const body = { name: String(fd.get('name') || '').trim() };
    const cap = String(fd.get('monthly_spend_cap') || '').trim();
    if (cap) body.monthly_spend_cap = cap;
    const exp = localToRFC3339(fd.get('expires_at'));
    if (exp) body.expires_at = exp;
    const allowed = scopes.selected();
    if (allowed.length) body.allowed_functions = allowed;
    const rate = parseWhole(fd.get('rate_limit_per_second'));
    if (rate !== undefined) body.rate_limit_per_second = rate;
    const thresholds = parseThresholds(fd.get('alert_thresholds'));
    if (thresholds) body.alert_thresholds = thresholds;
    await busy(submit, async () => {
      try {
        const k = await api('POST', '/api/v1/keys', body);
        state.sessionKeys.unshift({ id: k.id, name: k.name, prefix: k.prefix, key: k.key });
        form.reset();
        syncUTC();
        scopes.reset();
        showNewKey(fresh, k);
        await drawKeys(list, fresh, ctx);
      } catch (e) {
        if (!(e instanceof Problem)) throw e;
        showErrors(form, explainKeyProblem(e, allowed));
      }
    });
  });
  mount(main,
    h('header', { class: 'page-head' }, h('h1', null, 'API keys'),
      h('p', { class: 'muted' }, 'A key lets a program call functions on your account. fnmarket stores only a hash: a key is shown once, when you create or rotate it.')),
    fresh,
    h('section', { class: 'panel' }, h('h2', null, 'Create a key'), form),
    h('section', { class: 'panel' }, h('h2', null, 'Your keys'), list));
  await Promise.all([drawKeys(list, fresh, ctx), scopes.search()]);
}

// scopePicker is the "functions this key may call" box: a search of the
// catalog with a checkbox per function, and the chosen ones as removable
// chips. None chosen means all functions.
function scopePicker(ctx) {
  const chosen = new Set();
  const q = h('input', { type: 'search', id: 'scope-q', autocomplete: 'off', placeholder: 'Search the catalog to allow only some functions', 'aria-describedby': 'scope-summary scope-err' });
  const summary = h('p', { class: 'hint', id: 'scope-summary', 'aria-live': 'polite' });
  const chips = h('ul', { class: 'scope-chosen', id: 'scope-chosen' });
  const results = h('div', { class: 'scope-results', id: 'scope-results', role: 'group', 'aria-label': 'Catalog functions' });
  const drawChosen = () => {
    summary.textContent = chosen.size ? `This key may call only ${chosen.size === 1 ? 'this function' : `these ${chosen.size} functions`}.` : 'This key may call all functions. Pick some to allow only those.';
    mount(chips, [...chosen].sort().map((fn) => h('li', { class: 'scope-chip', dataset: { fn } }, h('code', null, fn),
      h('button', { type: 'button', class: 'btn btn-ghost btn-small', 'aria-label': `Remove ${fn}`, on: { click: () => toggle(fn, false) } }, '×'))));
    for (const box of results.querySelectorAll('input[type=checkbox]')) box.checked = chosen.has(box.dataset.fn);
  };
  const toggle = (fn, on) => { if (on) chosen.add(fn); else chosen.delete(fn); drawChosen(); };
  let seq = 0;
  async function search() {
    const mine = ++seq;
    let items;
    try {
      items = asList(await api('GET', `/api/v1/catalog${query({ q: q.value.trim() })}`));
    } catch (e) {
      if (mine !== seq || !ctx.alive()) return;
      mount(results, h('p', { class: 'notice notice-bad' }, `The catalog could not be searched: ${e.message}`));
      return;
    }
    if (mine !== seq || !ctx.alive()) return;
    // data-q names the search the list shows (tests wait for it).
    results.dataset.q = q.value.trim();
    const shown = items.slice(0, 50);
    mount(results, shown.length ? shown.map((it) => {
      const fn = `${it.vendor}/${it.name}`;
      const box = h('input', { type: 'checkbox', dataset: { fn }, checked: chosen.has(fn), id: `scope-${fn.replace(/[^A-Za-z0-9_-]/g, '-')}`,
        on: { change: (ev) => toggle(fn, ev.target.checked) } });
      return h('label', { class: 'check', for: box.id }, box, h('span', null, h('code', null, fn), it.vendor_name ? h('span', { class: 'muted small' }, ` by ${it.vendor_name}`) : null));
    }) : h('p', { class: 'empty small' }, q.value.trim() ? `Nothing matches “${q.value.trim()}”.` : 'No functions are published yet.'),
    items.length > shown.length ? h('p', { class: 'muted small' }, `${items.length - shown.length} more: refine the search.`) : null);
  }
  let timer = 0;
  q.addEventListener('input', () => { clearTimeout(timer); timer = setTimeout(() => search().catch((e) => toast(e.message)), 200); });
  q.addEventListener('keydown', (ev) => { if (ev.key === 'Enter') { ev.preventDefault(); clearTimeout(timer); search().catch((e) => toast(e.message)); } });
  drawChosen();
  const el = h('fieldset', { class: 'field scope-field', id: 'key-scopes', dataset: { field: 'allowed_functions' } },
    h('legend', null, 'Functions this key may call'), summary, chips,
    h('label', { for: 'scope-q', class: 'visually-hidden' }, 'Search the catalog'), q, results,
    h('p', { class: 'field-error', id: 'scope-err', dataset: { errorFor: 'allowed_functions' } }));
  return { el, search, selected: () => [...chosen].sort(), reset: () => { chosen.clear(); drawChosen(); } };
}

// showNewKey shows a secret once: a new key, or a rotated key's new secret
// with how long the old one still works (old is the key before rotating,
// grace the seconds asked for, said when the answer has no end of grace).
function showNewKey(slot, k, old, grace = 0) {
  const input = h('input', { type: 'text', readOnly: true, value: k.key, id: 'new-key-value', class: 'mono key-value', 'aria-label': `The new key ${k.name}`, spellcheck: 'false' });
  input.addEventListener('focus', () => input.select());
  let until = null;
  if (old) {
    const oldKey = ['The old key ', h('code', null, `${old.prefix}…`)];
    if (graceActive(k.previous_expires_at)) {
      until = h('p', { id: 'old-key-until' }, oldKey, ` works until ${fmtTime(k.previous_expires_at)}; then it gets 401. Switch your programs to the new key before then.`);
    } else if (k.previous_expires_at === undefined && grace > 0) {
      until = h('p', { id: 'old-key-until' }, oldKey, ` works for ${graceText(grace)} more; then it gets 401.`);
    } else {
      until = h('p', { id: 'old-key-until' }, oldKey, ' no longer works.');
    }
  }
  mount(slot, h('section', { class: 'panel panel-warn', id: 'new-key', role: 'region', 'aria-labelledby': 'new-key-h' },
    h('h2', { id: 'new-key-h' }, old ? `The new secret of “${k.name}”` : `Your new key “${k.name}”`),
    h('p', { class: 'warn' }, h('strong', null, 'Copy it now: it will not be shown again.'), ' fnmarket keeps only a hash. If you lose it, revoke it and create another.'),
    h('div', { class: 'key-row' }, input, copyButton(() => k.key, input, 'Copy key')),
    until,
    h('p', { class: 'muted small' }, 'Until you reload this tab, the “try it” box on every function page can use this key for you. ',
      h('a', { href: '/catalog', 'data-link': '' }, 'Find a function to try'), '.'),
    button('I have copied it', () => slot.replaceChildren(), { class: 'btn btn-small' })));
  input.focus();
}

// scopeCell shows a key's scope, collapsed to two names and a count when long.
function scopeCell(list) {
  if (!Array.isArray(list) || !list.length) return h('td', { class: 'key-scope' }, Array.isArray(list) ? 'All functions' : '—');
  if (list.length <= 2) return h('td', { class: 'key-scope' }, list.map((fn, i) => [i ? ', ' : null, h('code', null, fn)]));
  return h('td', { class: 'key-scope' }, h('details', { class: 'scope-more' },
    h('summary', null, `${list.slice(0, 2).join(', ')} and ${list.length - 2} more`),
    h('ul', { class: 'scope-list' }, list.map((fn) => h('li', null, h('code', null, fn))))));
}

function expiryCell(k) {
  const st = expiryState(k.expires_at);
  const badge = { expired: 'badge-bad', soon: 'badge-warn' }[st.state];
  return h('td', { class: 'key-expires', dataset: { expiry: st.state } },
    st.state === 'never' ? 'Never' : [fmtTime(k.expires_at), badge ? [' ', h('span', { class: ['badge', badge] }, st.text)] : null]);
}

async function drawKeys(list, fresh, ctx) {
  const keys = asList(await api('GET', '/api/v1/keys'));
  if (!ctx.alive()) return;
  if (!keys.length) { mount(list, h('p', { class: 'empty' }, 'No keys yet. Create one above to start calling functions.')); return; }
  // Columns show where the server reports their field.
  const has = (f) => keys.some((k) => k[f] !== undefined);
  const cols = { rate: has('rate_limit_per_second'), alerts: has('alert_thresholds'), spend: has('spend_this_month'), scope: has('allowed_functions'), expiry: has('expires_at') };
  const heads = ['Name', 'Key', cols.rate ? 'Spend cap, rate' : 'Spend cap', cols.alerts && 'Alerts at', cols.spend && 'Spent this month', cols.scope && 'May call', cols.expiry && 'Expires',
    'Last used', ''].filter((t) => t !== false);
  mount(list, h('div', { class: 'table-wrap' }, h('table', { class: 'table keys-table', id: 'keys-table' },
    h('thead', null, h('tr', null, heads.map((t) => h('th', { scope: 'col' }, t)))),
    h('tbody', null, keys.map((k) => {
      const expired = expiryState(k.expires_at).state === 'expired';
      return h('tr', { dataset: { keyId: k.id }, class: k.revoked_at || expired ? 'revoked' : null },
        h('th', { scope: 'row' }, k.name),
        h('td', null, h('div', { class: 'mono key-prefix' }, `${k.prefix}…`),
          h('div', { class: 'key-status' },
            k.revoked_at ? h('span', { class: 'badge badge-bad' }, 'Revoked') : expired ? h('span', { class: 'badge badge-bad' }, 'Expired') : h('span', { class: 'badge badge-good' }, 'Active'),
            !k.revoked_at && graceActive(k.previous_expires_at) ? h('p', { class: 'key-grace small' }, `Old key works until ${fmtTime(k.previous_expires_at)}`) : null)),
        h('td', null, h('div', { class: 'key-cap' }, k.monthly_spend_cap ? moneyString(k.monthly_spend_cap) : 'None'),
          cols.rate ? h('div', { class: 'key-rate small' }, rateText(k.rate_limit_per_second)) : null),
        cols.alerts ? h('td', { class: 'key-alerts' }, thresholdsText(k.alert_thresholds), k.monthly_spend_cap ? null : h('span', { class: 'muted small' }, ' (no cap, so never reached)')) : null,
        cols.spend ? h('td', { class: 'num key-spend' }, spendText(k.spend_this_month)) : null,
        cols.scope ? scopeCell(k.allowed_functions) : null,
        cols.expiry ? expiryCell(k) : null,
        h('td', null, h('div', { class: 'key-last-used' }, k.last_used_at ? fmtTime(k.last_used_at) : 'Never'),
          h('div', { class: 'muted small key-created' }, `created ${fmtTime(k.created_at)}`)),
        h('td', null, k.revoked_at ? null : h('div', { class: 'row-actions' },
          h('button', { type: 'button', class: 'btn btn-small', 'aria-label': `Edit key ${k.name}`, dataset: { edit: k.id }, on: { click: () => editDialog(k, list, fresh, ctx) } }, 'Edit'),
          h('button', { type: 'button', class: 'btn btn-small', 'aria-label': `Rotate key ${k.name}`, dataset: { rotate: k.id }, on: { click: () => rotateDialog(k, list, fresh, ctx) } }, 'Rotate'),
          h('button', { type: 'button', class: 'btn btn-small btn-danger', 'aria-label': `Revoke key ${k.name}`, dataset: { revoke: k.id },
            on: { click: () => confirmRevoke(k, list, fresh, ctx) } }, 'Revoke'))));
    })))));
}

// keyChanges is the PATCH body for an edit: only the settings whose field
// differs from what it showed, an emptied field as null (no cap, never
// expires, all functions, the platform's limit, the default thresholds).
// Unit-tested in TestFrontEndUnits.
export function keyChanges(k, form) {
  const body = {};
  const name = String(form.name || '').trim();
  if (name !== k.name) body.name = name;
  const cap = String(form.monthly_spend_cap || '').trim();
  if (cap !== (k.monthly_spend_cap || '')) body.monthly_spend_cap = cap || null;
  const rate = String(form.rate_limit_per_second || '').trim();
  if (rate !== (k.rate_limit_per_second ? String(k.rate_limit_per_second) : '')) body.rate_limit_per_second = parseWhole(rate) ?? null;
  const thr = String(form.alert_thresholds || '').trim();
  if (thr !== (k.alert_thresholds || []).join(', ')) body.alert_thresholds = parseThresholds(thr) ?? null;
  const exp = String(form.expires_at || '').trim();
  if (exp !== (k.expires_at ? localInput(new Date(k.expires_at)) : '')) body.expires_at = localToRFC3339(exp) ?? null;
  const fns = String(form.allowed_functions || '').split(/[\s,]+/).filter(Boolean).sort();
  if (fns.join(',') !== [...(k.allowed_functions || [])].sort().join(',')) body.allowed_functions = fns.length ? fns : null;
  return body;
}

// editDialog changes a key's settings; the secret stays.
function editDialog(k, list, fresh, ctx) {
  const err = formError();
  const yes = h('button', { type: 'submit', class: 'btn btn-primary', id: 'confirm-edit' }, 'Save');
  const no = h('button', { type: 'button', class: 'btn', value: 'cancel' }, 'Cancel');
  const form = h('form', { class: 'form', id: 'edit-key-form', novalidate: true },
    h('h2', { id: 'edit-key-h' }, `Edit “${k.name}”`),
    h('p', null, 'The key’s secret, this month’s spend and its rotation stay as they are. Every gateway applies the change within two seconds; a lower cap holds from the next call.'),
    field({ label: 'Name', name: 'name', value: k.name, required: true, attrs: { maxlength: 100, autocomplete: 'off', id: 'edit-key-name' } }),
    field({ label: 'Monthly spend cap', name: 'monthly_spend_cap', value: k.monthly_spend_cap || '', hint: 'Empty: no cap.', attrs: { inputmode: 'decimal', autocomplete: 'off', id: 'edit-key-cap' } }),
    field({ label: 'Rate limit', name: 'rate_limit_per_second', value: k.rate_limit_per_second ? String(k.rate_limit_per_second) : '', hint: 'Calls per second; empty: the platform default.',
      attrs: { inputmode: 'numeric', autocomplete: 'off', id: 'edit-key-rate-limit', placeholder: 'Platform default' } }),
    field({ label: 'Alert thresholds', name: 'alert_thresholds', value: (k.alert_thresholds || []).join(', '), hint: 'Percents of the cap; empty: 80 and 100.', attrs: { autocomplete: 'off', id: 'edit-key-thresholds' } }),
    field({ label: 'Expires', name: 'expires_at', type: 'datetime-local', value: k.expires_at ? localInput(new Date(k.expires_at)) : '', hint: 'Your local time; empty: never.', attrs: { id: 'edit-key-expires' } }),
    field({ label: 'Functions this key may call', name: 'allowed_functions', value: (k.allowed_functions || []).join(', '), hint: 'vendor/name, separated by commas; empty: all functions.',
      attrs: { autocomplete: 'off', id: 'edit-key-scope' } }),
    err, h('div', { class: 'actions' }, no, yes));
  const dlg = h('dialog', { class: 'dialog', id: 'edit-key-dialog', 'aria-labelledby': 'edit-key-h' }, form);
  no.addEventListener('click', () => dlg.close());
  dlg.addEventListener('close', () => dlg.remove());
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    clearErrors(form);
    const body = keyChanges(k, Object.fromEntries(new FormData(form)));
    if (!Object.keys(body).length) { dlg.close(); toast('Nothing changed'); return; }
    busy(yes, async () => {
      try {
        await api('PATCH', `/api/v1/keys/${enc(k.id)}`, body);
      } catch (e) {
        const p = e instanceof Problem ? e : new Problem(0, { detail: String(e && e.message) });
        if (p.unavailable) p.message = 'Editing keys is not available on this server yet.';
        showErrors(form, explainKeyProblem(p, body.allowed_functions || []));
        return;
      }
      dlg.close();
      toast(`Key “${body.name || k.name}” saved`);
      await drawKeys(list, fresh, ctx);
    }).catch((e) => toast(e.message));
  });
  document.body.appendChild(dlg);
  dlg.showModal();
  form.querySelector('#edit-key-name').focus();
}

// gracePresets are the rotate dialog's choices, in seconds.
const gracePresets = [[0, 'None'], [3600, '1 hour'], [86400, '24 hours'], [604800, '7 days']];

function rotateDialog(k, list, fresh, ctx) {
  const err = formError();
  const radios = gracePresets.map(([s, label]) => h('label', null,
    h('input', { type: 'radio', name: 'grace', value: String(s), id: `grace-${s}`, checked: s === 3600 }), label));
  const customRadio = h('input', { type: 'radio', name: 'grace', value: 'custom', id: 'grace-custom' });
  const custom = h('input', { type: 'text', inputmode: 'numeric', id: 'grace-custom-seconds', class: 'short', autocomplete: 'off', 'aria-label': 'Grace in seconds', 'aria-describedby': 'grace-err' });
  const customWrap = h('span', { class: 'grace-custom', hidden: true }, custom, h('span', { class: 'muted small' }, ' seconds'));
  const slot = h('p', { class: 'field-error', id: 'grace-err', dataset: { errorFor: 'grace_seconds' } });
  const yes = h('button', { type: 'submit', class: 'btn btn-primary', id: 'confirm-rotate' }, 'Rotate key');
  const no = h('button', { type: 'button', class: 'btn', value: 'cancel' }, 'Cancel');
  const form = h('form', { class: 'form', id: 'rotate-form', novalidate: true },
    h('h2', { id: 'rotate-h' }, `Rotate “${k.name}”?`),
    h('p', null, 'A new secret is made for this key and shown once. Its cap, this month’s spend, alerts, scopes and rate limit stay as they are.'),
    h('fieldset', { class: 'field radio-row', dataset: { field: 'grace_seconds' } },
      h('legend', null, h('span', null, 'The old key ', h('code', null, `${k.prefix}…`), ' keeps working for')),
      radios, h('label', null, customRadio, 'Custom'), customWrap, slot),
    err, h('div', { class: 'actions' }, no, yes));
  const dlg = h('dialog', { class: 'dialog', id: 'rotate-dialog', 'aria-labelledby': 'rotate-h' }, form);
  form.addEventListener('change', (ev) => {
    if (ev.target.name !== 'grace') return; // not the seconds box: focus would never leave it
    customWrap.hidden = !customRadio.checked;
    if (customRadio.checked) custom.focus();
  });
  no.addEventListener('click', () => dlg.close());
  dlg.addEventListener('close', () => dlg.remove());
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    clearErrors(form);
    const picked = form.querySelector('input[name=grace]:checked');
    const grace = picked.value === 'custom' ? parseWhole(custom.value) : Number(picked.value);
    if (grace === undefined) {
      showErrors(form, { message: 'Enter the grace in seconds.', fields: { grace_seconds: 'enter a whole number of seconds' } });
      custom.setAttribute('aria-invalid', 'true');
      custom.focus();
      return;
    }
    busy(yes, async () => {
      let nk;
      try {
        nk = await api('POST', `/api/v1/keys/${enc(k.id)}/rotate`, { grace_seconds: grace });
      } catch (e) {
        const p = e instanceof Problem ? e : new Problem(0, { detail: String(e && e.message) });
        if (p.unavailable) p.message = 'Rotating keys is not available on this server yet.';
        showErrors(form, p);
        if (p.fields.grace_seconds && picked.value === 'custom') custom.setAttribute('aria-invalid', 'true');
        return;
      }
      const held = state.sessionKeys.find((s) => s.id === k.id);
      if (held) Object.assign(held, { prefix: nk.prefix, key: nk.key });
      else state.sessionKeys.unshift({ id: nk.id, name: nk.name, prefix: nk.prefix, key: nk.key });
      dlg.close();
      showNewKey(fresh, nk, k, grace);
      toast(`Key “${k.name}” rotated`);
      await drawKeys(list, fresh, ctx);
    }).catch((e) => toast(e.message));
  });
  document.body.appendChild(dlg);
  dlg.showModal();
  no.focus();
}

function confirmRevoke(k, list, fresh, ctx) {
  const err = h('p', { class: 'field-error', role: 'alert' });
  const yes = h('button', { type: 'button', class: 'btn btn-danger', id: 'confirm-revoke' }, 'Revoke key');
  const no = h('button', { type: 'button', class: 'btn', value: 'cancel' }, 'Cancel');
  const dlg = h('dialog', { class: 'dialog', 'aria-labelledby': 'revoke-h' },
    h('h2', { id: 'revoke-h' }, `Revoke “${k.name}”?`),
    h('p', null, 'Programs using ', h('code', null, `${k.prefix}…`), ' stop working within two seconds. This cannot be undone.'),
    err, h('div', { class: 'actions' }, no, yes));
  no.addEventListener('click', () => dlg.close());
  dlg.addEventListener('close', () => dlg.remove());
  yes.addEventListener('click', () => busy(yes, async () => {
    try {
      await api('DELETE', `/api/v1/keys/${enc(k.id)}`);
    } catch (e) {
      err.textContent = e.message;
      return;
    }
    forgetKey(k.id);
    dlg.close();
    toast(`Key “${k.name}” revoked`);
    await drawKeys(list, fresh, ctx);
  }));
  document.body.appendChild(dlg);
  dlg.showModal();
  no.focus();
}
