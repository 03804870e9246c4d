// Consumer pages: the public catalog, a function's page with its curl
// example and "try it" box, usage charts and invoices (API keys are in
// keys.js).

import { api, asList, query, Problem } from './api.js';
import { h, mount, field, formError, showErrors, clearErrors, busy, toast, copyButton, fmtTime, fmtMonth, fmtInt } from './dom.js';
import { state } from './state.js';
import { render as renderMarkdown, plainText } from './markdown.js';
import { pricingRows, pricingSummary, costEstimator } from './pricing.js';
import { moneyString, sum, money, parseDec, add, isZero } from './money.js';
import { timeChart, buckets, bucketOf, ranges } from './charts.js';
import { nextCallLine } from './billing.js';

const enc = encodeURIComponent;

// notAvailable is shown where a route this server does not serve (yet) would be.
export function notAvailable(what) {
  return h('p', { class: 'notice', dataset: { unavailable: '' } }, `${what}: not available on this server yet.`);
}

// ---- Catalog -------------------------------------------------------------

export async function catalogPage(main, _p, ctx) {
  const q = ctx.query.get('q') || '';
  const input = h('input', { type: 'search', id: 'catalog-q', name: 'q', value: q, placeholder: 'Search functions: malware, resize, geocode…', autocomplete: 'off' });
  const results = h('div', { class: 'cards', id: 'catalog-results', 'aria-live': 'polite' });
  const count = h('p', { class: 'muted small', id: 'catalog-count' });
  const form = h('form', { class: 'search', role: 'search' },
    h('label', { for: 'catalog-q', class: 'visually-hidden' }, 'Search the catalog'), input,
    h('button', { type: 'submit', class: 'btn btn-primary' }, 'Search'));
  let seq = 0;
  async function search() {
    const mine = ++seq;
    const text = input.value.trim();
    history.replaceState(null, '', `${location.pathname}${query({ q: text })}`);
    let items;
    try {
      items = asList(await api('GET', `/api/v1/catalog${query({ q: text })}`));
    } catch (e) {
      if (mine !== seq || !ctx.alive()) return;
      if (e instanceof Problem && e.fields && e.fields.q) { count.textContent = `Search ${e.fields.q}.`; return; }
      throw e;
    }
    if (mine !== seq || !ctx.alive()) return;
    count.textContent = items.length === 1 ? '1 function' : `${items.length} functions`;
    if (!items.length) {
      mount(results, h('div', { class: 'empty' }, text ? `Nothing matches “${text}”.` : 'No functions are published yet.',
        state.me ? [' ', h('a', { href: '/vendor', 'data-link': '' }, 'Publish the first one.')] : null));
      return;
    }
    mount(results, items.map(card));
  }
  let timer = 0;
  input.addEventListener('input', () => { clearTimeout(timer); timer = setTimeout(() => search().catch((e) => toast(e.message)), 200); });
  form.addEventListener('submit', (ev) => { ev.preventDefault(); clearTimeout(timer); search().catch((e) => toast(e.message)); });
  mount(main,
    h('section', { class: 'hero' },
      h('h1', null, 'Functions you pay for by the call'),
      h('p', { class: 'lead' }, 'Find one function that does one job well. Call it over plain REST with an API key, and pay only for the calls and compute-milliseconds you use.'),
      form),
    count, results);
  await search();
}

function card(item) {
  const href = `/functions/${enc(item.vendor)}/${enc(item.name)}`;
  return h('article', { class: 'card' },
    h('h2', { class: 'card-title' }, h('a', { href, 'data-link': '' }, item.name)),
    h('p', { class: 'card-vendor muted' }, 'by ', item.vendor_name || item.vendor),
    h('p', { class: 'card-desc' }, plainText(item.description) || 'No description.'),
    h('p', { class: 'card-price' }, pricingSummary(item.pricing)));
}

// ---- Function page --------------------------------------------------------

const statusText = { 200: 'OK', 201: 'Created', 202: 'Accepted', 204: 'No Content', 400: 'Bad Request', 401: 'Unauthorized', 402: 'Payment Required', 403: 'Forbidden', 404: 'Not Found', 413: 'Payload Too Large', 429: 'Too Many Requests', 500: 'Internal Server Error', 502: 'Bad Gateway', 503: 'Service Unavailable', 504: 'Gateway Timeout' };

export async function functionPage(main, [vendor, name], ctx) {
  const fn = await api('GET', `/api/v1/catalog/${enc(vendor)}/${enc(name)}`);
  if (!ctx.alive()) return;
  const invokeURL = new URL(fn.invoke_url || `/v1/invoke/${enc(vendor)}/${enc(name)}`, location.origin).href;
  const curlText = `curl -X POST ${invokeURL} \\\n  -H "X-API-Key: $FNMARKET_API_KEY" \\\n  -H "Content-Type: application/json" \\\n  -d '{}'`;
  const curlPre = h('pre', { class: 'code', id: 'curl-example' }, h('code', null, curlText));
  const desc = h('div', { class: 'markdown', id: 'fn-description' }, renderMarkdown(fn.description || 'No description yet.'));
  const nextCall = state.me ? nextCallLine(vendor, name) : null;

  mount(main,
    h('nav', { class: 'crumbs', 'aria-label': 'Breadcrumb' }, h('a', { href: '/catalog', 'data-link': '' }, 'Catalog'), ' / ', fn.vendor_name || fn.vendor),
    h('header', { class: 'page-head' },
      h('h1', null, fn.name),
      h('p', { class: 'muted' }, 'by ', h('strong', null, fn.vendor_name || fn.vendor), ` · version ${fn.published_version} · times out after ${fmtInt(fn.timeout_ms)} ms`)),
    h('div', { class: 'layout-2' },
      h('div', null,
        h('section', { class: 'panel' }, h('h2', null, 'About'), desc),
        h('section', { class: 'panel' }, h('h2', null, 'Call it'),
          h('p', null, 'Send any request to the function’s URL with your API key in ', h('code', null, 'X-API-Key'), ' (or ', h('code', null, 'Authorization: Bearer'), '). Its answer comes back as it is, with ', h('code', null, 'X-Compute-Ms'), ' and ', h('code', null, 'X-Invocation-Id'), '.'),
          h('div', { class: 'code-box' }, curlPre, copyButton(() => curlText, null, 'Copy curl')),
          state.me ? null : h('p', { class: 'muted small' }, h('a', { href: `/signup?next=${enc('/keys')}`, 'data-link': '' }, 'Create an account'), ' to get an API key.')),
        tryIt(invokeURL, () => { if (nextCall) nextCall.refresh(); })),
      h('aside', null,
        h('section', { class: 'panel' }, h('h2', null, 'Pricing'),
          h('table', { class: 'kv', id: 'fn-pricing' }, h('tbody', null, pricingRows(fn.pricing).map(([k, v]) => h('tr', null, h('th', { scope: 'row' }, k), h('td', null, v))))),
          nextCall,
          h('p', { class: 'muted small' }, 'Cost of a call = per-call price + compute-ms × price per compute-ms. Free calls waive the per-call price only. Gateway refusals (bad key, rate limit, spend cap) are never billed.'),
          costEstimator(fn)))));
}

// tryIt is the "try it" box; onAnswered runs after each answer from the
// gateway (a call may have moved the consumer's place in the month).
function tryIt(invokeURL, onAnswered) {
  const err = formError();
  const keys = state.sessionKeys;
  const keySelect = h('select', { id: 'try-key-choice' },
    keys.map((k) => h('option', { value: k.id }, `${k.name} (${k.prefix}…) — created in this tab`)),
    h('option', { value: '' }, 'Paste a key…'));
  const choice = keys.length ? field({ label: 'API key', name: 'key_choice', control: keySelect, hint: 'Keys you create are held in this tab’s memory only, until you reload.' }) : null;
  const paste = field({ label: keys.length ? 'Key to use' : 'API key', name: 'key', type: 'password', hint: 'Keys are shown once, when created on the API keys page. Paste one here; it is not stored.',
    attrs: { autocomplete: 'off', spellcheck: 'false', id: 'try-key' } });
  const method = field({ label: 'Method', name: 'method', control: h('select', null, ['POST', 'GET', 'PUT', 'DELETE'].map((m) => h('option', { value: m }, m))) });
  const body = field({ label: 'Request body', name: 'body', type: 'textarea', value: '{\n  "hello": "world"\n}', attrs: { rows: 5, spellcheck: 'false', class: 'mono', id: 'try-body-input' } });
  const send = h('button', { type: 'submit', class: 'btn btn-primary', id: 'try-send' }, 'Send request');
  const out = h('div', { class: 'try-result', id: 'try-result', 'aria-live': 'polite' });
  const syncPaste = () => { if (choice) paste.hidden = keySelect.value !== ''; };
  keySelect.addEventListener('change', syncPaste);
  syncPaste();
  const methodSel = method.querySelector('select');
  methodSel.addEventListener('change', () => { body.hidden = methodSel.value === 'GET'; });

  const form = h('form', { class: 'form', id: 'try-form', novalidate: true }, err, choice, paste, h('div', { class: 'grid-2 try-meta' }, method), body, send);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    clearErrors(form);
    let key = '';
    if (choice && keySelect.value) key = (state.sessionKeys.find((k) => k.id === keySelect.value) || {}).key || '';
    else key = paste.querySelector('input').value.trim();
    if (!key) { showErrors(form, { message: 'Choose or paste an API key.', fields: { key: 'is required: paste an API key' } }); return; }
    const init = { method: methodSel.value, headers: { 'X-API-Key': key }, credentials: 'omit', cache: 'no-store' };
    if (methodSel.value !== 'GET') {
      init.headers['Content-Type'] = 'application/json';
      init.body = body.querySelector('textarea').value;
    }
    await busy(send, async () => {
      const started = performance.now();
      let res;
      try {
        res = await fetch(invokeURL, init);
      } catch (e) {
        mount(out, h('p', { class: 'notice notice-bad' }, 'The request did not get through (network error, or the gateway is on another origin that does not allow it).'));
        return;
      }
      const text = await res.text();
      const ms = Math.round(performance.now() - started);
      onAnswered();
      let shown = text;
      try { shown = JSON.stringify(JSON.parse(text), null, 2); } catch { /* not JSON: as it is */ }
      if (shown.length > 65536) shown = `${shown.slice(0, 65536)}\n… (cut at 64 KiB)`;
      const ok = res.status >= 200 && res.status < 300;
      const hint = { 401: 'The key is missing, wrong or revoked.', 402: 'The key’s monthly spend cap is reached.', 404: 'The function is not published (or not found).', 429: 'Rate limited: slow down.' }[res.status];
      mount(out,
        h('div', { class: 'try-status-line' },
          h('span', { class: ['badge', ok ? 'badge-good' : 'badge-bad'], id: 'try-status' }, `${res.status} ${statusText[res.status] || res.statusText || ''}`.trim()),
          h('span', { class: 'muted small' }, ` round trip ${ms} ms`), hint ? h('span', { class: 'muted small' }, ` · ${hint}`) : null),
        h('dl', { class: 'kv-list' },
          h('dt', null, 'X-Compute-Ms'), h('dd', { id: 'try-compute-ms' }, res.headers.get('X-Compute-Ms') || '—'),
          h('dt', null, 'X-Invocation-Id'), h('dd', { id: 'try-invocation-id', class: 'mono' }, res.headers.get('X-Invocation-Id') || '—'),
          h('dt', null, 'Content-Type'), h('dd', null, res.headers.get('Content-Type') || '—')),
        h('pre', { class: 'code', id: 'try-body' }, h('code', null, shown || '(empty body)')));
    });
  });
  return h('section', { class: 'panel', id: 'try-it' }, h('h2', null, 'Try it'),
    h('p', { class: 'muted small' }, 'Sends a real, billed call through the gateway with your key.'), form, out);
}

// ---- Usage ----------------------------------------------------------------

// rangePicker is a row of toggle buttons for day / week / month.
export function rangePicker(current, onPick) {
  return h('div', { class: 'segmented', role: 'group', 'aria-label': 'Period' },
    Object.entries(ranges).map(([key, r]) => h('button', { type: 'button', class: 'seg', 'aria-pressed': String(key === current), dataset: { range: key },
      on: { click: () => onPick(key) } }, r.label)));
}

// seriesBy groups usage rows into one series per function, aligned to the
// range's buckets, for a numeric column (cost is summed exactly and charted
// as a float only for its height).
export function seriesBy(rows, b, column, keyOf = (r) => r.function) {
  const index = new Map(b.list.map((t, i) => [t, i]));
  const by = new Map();
  for (const r of rows) {
    const i = index.get(bucketOf(r.period_start, b.granularity));
    if (i === undefined) continue;
    const k = keyOf(r);
    if (!by.has(k)) by.set(k, { name: k, exact: b.list.map(() => ({ n: 0n, s: 0 })), values: b.list.map(() => 0) });
    const sr = by.get(k);
    if (column === 'cost') {
      const d = parseDec(r.cost);
      if (d) sr.exact[i] = add(sr.exact[i], d);
    } else {
      sr.values[i] += Number(r[column] || 0);
    }
  }
  const list = [...by.values()].sort((a, c) => a.name.localeCompare(c.name));
  if (column === 'cost') for (const sr of list) sr.values = sr.exact.map((d) => Number(`${d.n}e-${d.s}`));
  return list;
}

// costFmt formats a charted cost in currency: exact decimals in tips, round
// ones on the axis.
export function costFmt(currency) {
  return (v, axis) => {
    if (axis) return v === 0 ? '0' : money(parseDec(v.toFixed(v < 0.01 ? 6 : 4).replace(/\.?0+$/, '')) || { n: 0n, s: 0 }, currency, 2);
    return money(parseDec(v.toFixed(12).replace(/\.?0+$/, '')) || { n: 0n, s: 0 }, currency, 2);
  };
}

// currencyOrder sorts currencies USD first, then alphabetically.
function currencyOrder(a, c) {
  const key = (x) => (x === 'USD' ? '' : x);
  return key(a).localeCompare(key(c));
}

// costCharts draws cost over time as one chart per currency of rows (USD
// alone when there are none), never adding amounts in different currencies:
// each is titled "<title> (<currency>)" with id "<id>-<currency>". keyOf
// names a row's series; placeholder draws an all-zero series in an empty
// chart, for a legend-less flat line.
export function costCharts(rows, b, { title, id, keyOf = (r) => r.function, placeholder = false }) {
  const by = new Map();
  for (const r of rows) {
    const c = r.currency || 'USD';
    if (!by.has(c)) by.set(c, []);
    by.get(c).push(r);
  }
  if (!by.size) by.set('USD', []);
  return [...by.keys()].sort(currencyOrder).map((c) => {
    let series = seriesBy(by.get(c), b, 'cost', keyOf);
    if (!series.length && placeholder) series = [{ name: title, values: b.list.map(() => 0) }];
    // A chart of calls that cost nothing is data, not emptiness.
    const empty = !by.get(c).some((r) => Number(r.calls || 0) > 0 || (parseDec(r.cost) && !isZero(parseDec(r.cost))));
    return timeChart({ title: `${title} (${c})`, bucketList: b.list, granularity: b.granularity, series, kind: 'line', fmt: costFmt(c), empty,
      id: `${id}-${c.replace(/[^A-Za-z0-9]/g, '')}` });
  });
}

export async function usagePage(main, _p, ctx) {
  const slot = h('div', { id: 'usage-charts' });
  const upcoming = h('div', { id: 'upcoming' });
  let range = ctx.query.get('range') in ranges ? ctx.query.get('range') : 'week';
  const picker = h('div');
  async function draw() {
    mount(picker, rangePicker(range, (r) => { range = r; history.replaceState(null, '', `/usage?range=${r}`); draw().catch((e) => toast(e.message)); }));
    const b = buckets(range);
    let rows;
    try {
      rows = asList(await api('GET', `/api/v1/usage${query({ from: b.from, to: b.to, granularity: b.granularity })}`));
    } catch (e) {
      if (e instanceof Problem && e.status === 404) { mount(slot, notAvailable('Usage')); return; }
      throw e;
    }
    if (!ctx.alive()) return;
    const calls = rows.reduce((a, r) => a + Number(r.calls || 0), 0);
    const ms = rows.reduce((a, r) => a + Number(r.compute_ms || 0), 0);
    mount(slot,
      h('div', { class: 'stats' },
        stat('Calls', fmtInt(calls), 'usage-calls'), stat('Compute-ms', fmtInt(ms), 'usage-ms'), stat('Cost in this period', costByCurrency(rows), 'usage-cost')),
      h('div', { class: 'charts' },
        timeChart({ title: 'Calls per function', bucketList: b.list, granularity: b.granularity, series: seriesBy(rows, b, 'calls'), kind: 'bar', integer: true, fmt: (v) => fmtInt(Math.round(v)), id: 'chart-calls' }),
        timeChart({ title: 'Compute-ms per function', bucketList: b.list, granularity: b.granularity, series: seriesBy(rows, b, 'compute_ms'), kind: 'line', integer: true, fmt: (v) => fmtInt(Math.round(v)), id: 'chart-ms' }),
        costCharts(rows, b, { title: 'Cost per function', id: 'chart-cost' })),
      usageTable(rows));
  }
  mount(main,
    h('header', { class: 'page-head' }, h('h1', null, 'Usage'), h('p', { class: 'muted' }, 'Calls, compute and cost of every function you call. Times are UTC.')),
    h('section', { class: 'panel' }, h('h2', null, 'This month so far'), upcoming),
    h('section', { class: 'panel' }, h('div', { class: 'panel-head' }, h('h2', null, 'Over time'), picker), slot));
  await Promise.all([draw(), drawUpcoming(upcoming, ctx)]);
}

function stat(label, value, id) {
  return h('div', { class: 'stat' }, h('div', { class: 'stat-label' }, label), h('div', { class: 'stat-value', id }, value));
}

function usageTable(rows) {
  const by = new Map();
  for (const r of rows) {
    const k = r.function;
    const t = by.get(k) || { calls: 0, ms: 0, costs: [] };
    t.calls += Number(r.calls || 0);
    t.ms += Number(r.compute_ms || 0);
    t.costs.push(r);
    by.set(k, t);
  }
  if (!by.size) return null;
  return h('div', { class: 'table-wrap' }, h('table', { class: 'table', id: 'usage-table' },
    h('thead', null, h('tr', null, ['Function', 'Calls', 'Compute-ms', 'Cost'].map((t) => h('th', { scope: 'col' }, t)))),
    h('tbody', null, [...by.entries()].map(([k, t]) => h('tr', null, h('th', { scope: 'row' }, k), h('td', null, fmtInt(t.calls)), h('td', null, fmtInt(t.ms)),
      h('td', null, costByCurrency(t.costs)))))));
}

async function drawUpcoming(slot, ctx) {
  let invs;
  try {
    invs = upcomingList(await api('GET', '/api/v1/invoices/upcoming'));
  } catch (e) {
    if (e instanceof Problem && e.status === 404) { mount(slot, notAvailable('The upcoming invoice')); return; }
    throw e;
  }
  if (!ctx.alive()) return;
  if (!invs.length || invs.every((i) => !(i.lines || []).length)) {
    mount(slot, h('p', { class: 'empty' }, 'Nothing used this month yet.'), h('p', null, h('a', { href: '/invoices', 'data-link': '' }, 'Past invoices')));
    return;
  }
  mount(slot, invs.map((inv, i) => h('div', { class: 'upcoming', dataset: { currency: inv.currency || '' } },
    h('div', { class: 'stats' }, stat('Running total', moneyString(inv.total, inv.currency), i === 0 ? 'upcoming-total' : `upcoming-total-${inv.currency}`),
      stat('Period', `${fmtMonth(inv.period_start)}`, null), stat('Status', inv.status === 'preview' ? 'Not yet billed' : inv.status, null)),
    linesTable(inv))), h('p', null, h('a', { href: '/invoices', 'data-link': '' }, 'Past invoices')));
}

// upcomingList flattens the upcoming-invoice answer: one preview invoice
// (the first currency, USD first) with the previews in further currencies
// under other_currencies; a list is accepted too.
export function upcomingList(doc) {
  return asList(doc).flatMap((inv) => [inv, ...(Array.isArray(inv.other_currencies) ? inv.other_currencies : [])]);
}

// costByCurrency sums rows' exact costs per currency and formats them, USD
// first, then alphabetically, e.g. "$0.25 + €0.50"; amounts in different
// currencies are never added.
export function costByCurrency(rows) {
  const by = new Map();
  for (const r of rows) {
    const c = r.currency || 'USD';
    if (!by.has(c)) by.set(c, []);
    by.get(c).push(r.cost);
  }
  if (!by.size) return money(sum([]), 'USD', 2);
  return [...by.entries()].sort(([a], [c]) => currencyOrder(a, c)).map(([c, costs]) => money(sum(costs), c, 2)).join(' + ');
}

// lineKind labels an invoice line: this month's usage, or an adjustment for
// usage of an earlier month that was rolled up after that month was billed.
export function lineKind(l) {
  if (l.kind === 'adjustment') return h('span', { class: 'badge badge-warn line-kind', dataset: { kind: 'adjustment' } }, `late usage for ${fmtMonth(l.period_start)}`);
  return h('span', { class: 'badge badge-muted line-kind', dataset: { kind: l.kind || 'usage' } }, l.kind || 'usage');
}

// signedMoney formats an amount that may be negative (an adjustment can
// credit a version), e.g. "−$0.10".
export function signedMoney(str, currency) {
  const t = String(str ?? '').trim();
  return t.startsWith('-') ? `−${moneyString(t.slice(1), currency)}` : moneyString(t, currency);
}

// linesTable lists an invoice's lines, each with its kind.
export function linesTable(inv) {
  const lines = inv.lines || [];
  return h('div', { class: 'table-wrap' }, h('table', { class: 'table lines-table' },
    h('thead', null, h('tr', null, ['Function', 'Version', 'Kind', 'Calls', 'Free', 'Billable', 'Compute-ms', 'Amount'].map((t) => h('th', { scope: 'col' }, t)))),
    h('tbody', null, lines.length ? lines.map((l) => h('tr', { dataset: { kind: l.kind || 'usage' } }, h('th', { scope: 'row' }, l.function), h('td', null, `v${l.version}`), h('td', null, lineKind(l)),
      h('td', null, fmtInt(l.calls)), h('td', null, fmtInt(l.free_calls)), h('td', null, fmtInt(l.billable_calls)), h('td', null, fmtInt(l.compute_ms)), h('td', { class: 'num' }, signedMoney(l.amount, inv.currency))))
      : h('tr', null, h('td', { colspan: 8, class: 'muted' }, 'No lines.'))),
    h('tfoot', null, h('tr', null, h('th', { scope: 'row', colspan: 7 }, 'Total'), h('td', { class: 'num' }, moneyString(inv.total, inv.currency))))));
}

// ---- Invoices -------------------------------------------------------------

function statusBadge(st) {
  const cls = { paid: 'badge-good', open: 'badge-warn', draft: 'badge-muted', void: 'badge-muted', preview: 'badge-muted' }[st] || 'badge-muted';
  return h('span', { class: ['badge', cls] }, st || 'unknown');
}

export async function invoicesPage(main, _p, ctx) {
  const slot = h('div', { id: 'invoices' });
  mount(main, h('header', { class: 'page-head' }, h('h1', null, 'Invoices'), h('p', { class: 'muted' }, 'One invoice per month and currency, issued after the month ends. See ', h('a', { href: '/usage', 'data-link': '' }, 'usage'), ' for the running month.')), slot);
  let invs;
  try {
    invs = asList(await api('GET', '/api/v1/invoices'));
  } catch (e) {
    if (e instanceof Problem && e.status === 404) { mount(slot, notAvailable('Invoices')); return; }
    throw e;
  }
  if (!ctx.alive()) return;
  if (!invs.length) { mount(slot, h('p', { class: 'empty panel' }, 'No invoices yet.')); return; }
  mount(slot, invs.map((inv) => h('details', { class: 'panel invoice' },
    h('summary', null, h('span', { class: 'inv-period' }, fmtMonth(inv.period_start)), statusBadge(inv.status), h('span', { class: 'inv-total' }, moneyString(inv.total, inv.currency))),
    linesTable(inv),
    h('p', null, h('a', { href: `/invoices/${enc(inv.id)}`, 'data-link': '' }, 'Open this invoice')))));
}

export async function invoicePage(main, [id], ctx) {
  let inv;
  try {
    inv = await api('GET', `/api/v1/invoices/${enc(id)}`);
  } catch (e) {
    if (e instanceof Problem && e.unavailable) { mount(main, h('h1', null, 'Invoice'), notAvailable('Invoices')); return; }
    throw e;
  }
  if (!ctx.alive()) return;
  mount(main,
    h('nav', { class: 'crumbs', 'aria-label': 'Breadcrumb' }, h('a', { href: '/invoices', 'data-link': '' }, 'Invoices'), ' / ', fmtMonth(inv.period_start)),
    h('header', { class: 'page-head' }, h('h1', null, `Invoice for ${fmtMonth(inv.period_start)}`), h('p', null, statusBadge(inv.status), ' ', h('span', { class: 'muted small mono' }, inv.id))),
    h('section', { class: 'panel' },
      h('div', { class: 'stats' }, stat('Total', moneyString(inv.total, inv.currency), 'invoice-total'), stat('In cents', fmtInt(inv.total_cents), null),
        stat('Period', `${fmtTime(inv.period_start)} – ${fmtTime(inv.period_end)}`, null)),
      linesTable(inv),
      inv.stripe_invoice_id ? h('p', { class: 'muted small' }, `Stripe invoice ${inv.stripe_invoice_id}`) : null));
}
