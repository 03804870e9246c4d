// Vendor pages: becoming a vendor, the list of one's functions, publishing a
// function and its versions, a function's charts, and monthly statements.

import { api, asList, query, Problem } from './api.js';
import { h, mount, field, formError, showErrors, clearErrors, busy, toast, fmtTime, fmtMonth, fmtInt } from './dom.js';
import { state } from './state.js';
import { render as renderMarkdown } from './markdown.js';
import { pricingForm, pricingSummary, intOrRaw } from './pricing.js';
import { moneyString } from './money.js';
import { timeChart, buckets, bucketOf } from './charts.js';
import { notAvailable, rangePicker, seriesBy, costByCurrency, costCharts } from './consumer.js';
import { readBase64, fmtBytes } from './files.js';

const enc = encodeURIComponent;

function submitting(form, submit, fn) {
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    clearErrors(form);
    await busy(submit, async () => {
      try {
        await fn(new FormData(form));
      } catch (e) {
        if (!(e instanceof Problem)) throw e;
        showErrors(form, e);
      }
    });
  });
}

// ---- Become a vendor / my functions ----------------------------------------

export async function vendorPage(main, _p, ctx) {
  if (!state.me.vendor) {
    const err = formError();
    const submit = h('button', { type: 'submit', class: 'btn btn-primary', id: 'become-vendor' }, 'Become a vendor');
    const form = h('form', { class: 'form', id: 'vendor-form', novalidate: true }, err,
      field({ label: 'Vendor slug', name: 'slug', required: true, hint: 'Part of your functions’ URLs: 3 to 40 characters of a–z, 0–9 and -.', attrs: { autocomplete: 'off', id: 'vendor-slug', spellcheck: 'false' } }),
      field({ label: 'Display name', name: 'display_name', required: true, hint: 'Shown in the catalog, e.g. your company.', attrs: { id: 'vendor-name' } }),
      submit);
    submitting(form, submit, async (fd) => {
      const v = await api('POST', '/api/v1/vendor', { slug: String(fd.get('slug') || '').trim(), display_name: String(fd.get('display_name') || '').trim() });
      state.me = { ...state.me, vendor: v };
      toast(`You sell as ${v.display_name}`);
      ctx.navigate('/vendor', { replace: true });
    });
    mount(main, h('section', { class: 'panel narrow' }, h('h1', null, 'Sell a function'),
      h('p', { class: 'lead' }, 'Package one thing you do well as a function: an HTTPS endpoint you host, or a WebAssembly module fnmarket runs for you. Set a price per call and per compute-millisecond; fnmarket handles keys, metering, invoices and payouts.'),
      form));
    return;
  }
  const fns = asList(await api('GET', '/api/v1/functions'));
  if (!ctx.alive()) return;
  mount(main,
    h('header', { class: 'page-head row' },
      h('div', null, h('h1', null, 'My functions'), h('p', { class: 'muted' }, `Selling as ${state.me.vendor.display_name} (${state.me.vendor.slug}). `, h('a', { href: '/statements', 'data-link': '' }, 'Statements and payouts'))),
      h('a', { href: '/vendor/new', 'data-link': '', class: 'btn btn-primary', id: 'new-function' }, 'Publish a function')),
    fns.length ? h('div', { class: 'table-wrap panel' }, h('table', { class: 'table', id: 'functions-table' },
      h('thead', null, h('tr', null, ['Function', 'Status', 'Versions', 'Pricing (latest)', 'Updated'].map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', null, fns.map((f) => {
        const latest = f.versions[f.versions.length - 1] || {};
        return h('tr', null,
          h('th', { scope: 'row' }, h('a', { href: `/vendor/functions/${enc(f.id)}`, 'data-link': '' }, f.name)),
          h('td', null, publishedBadge(f)),
          h('td', null, String(f.versions.length)),
          h('td', { class: 'small' }, pricingSummary(latest.pricing)),
          h('td', null, fmtTime(f.updated_at || f.created_at)));
      }))))
      : h('div', { class: 'panel empty' }, 'You have not published anything yet. ', h('a', { href: '/vendor/new', 'data-link': '' }, 'Publish your first function.')));
}

function publishedBadge(f) {
  return f.published_version ? h('span', { class: 'badge badge-good', id: 'published-badge' }, `Published v${f.published_version}`) : h('span', { class: 'badge badge-muted', id: 'published-badge' }, 'Unpublished');
}

// versionFields are the inputs of a version: the backend (an HTTP URL, or a
// WebAssembly module uploaded from a file), the timeout and the rate limit.
// initial is a version as the API returns it (the latest, for a new
// version). It returns the element and read(), which resolves to the
// version's JSON fields (reading and base64-encoding the module file).
function versionFields(initial = {}) {
  const backend = initial.backend || {};
  const isWasm = backend.type === 'wasm';
  const httpRadio = h('input', { type: 'radio', name: 'backend.type', value: 'http', id: 'backend-type-http', checked: !isWasm });
  const wasmRadio = h('input', { type: 'radio', name: 'backend.type', value: 'wasm', id: 'backend-type-wasm', checked: isWasm });
  const kind = h('div', { class: 'field', dataset: { field: 'backend.type' } },
    h('fieldset', { class: 'radio-row', id: 'backend-type' }, h('legend', null, 'Backend type'),
      h('label', { for: httpRadio.id }, httpRadio, ' HTTP URL'),
      h('label', { for: wasmRadio.id }, wasmRadio, ' WebAssembly module')),
    h('p', { class: 'field-error', id: 'backend-type-err', dataset: { errorFor: 'backend.type' } }));

  const url = field({ label: 'Backend URL', name: 'backend.url', type: 'url', required: true, value: backend.url || '', hint: 'The HTTPS endpoint fnmarket forwards calls to.', attrs: { placeholder: 'https://api.example.com/scan', id: 'backend-url', spellcheck: 'false' } });
  const urlInput = url.querySelector('input');
  const httpBox = h('div', { id: 'backend-http' }, url);

  const fileInput = h('input', { type: 'file' });
  const module = field({ label: 'WebAssembly module (.wasm)', name: 'backend.module_base64', control: fileInput, value: null, required: true,
    hint: isWasm ? `A WASI command exporting _start and memory. This version runs sha256 ${shortSha(backend.module_sha256)}; choose the module for the new version, even if unchanged.`
      : 'A WASI command exporting _start and memory (GOOS=wasip1 GOARCH=wasm go build makes one). Its stdout is the answer, its stderr goes to the log.',
    attrs: { id: 'backend-module', accept: '.wasm' } });
  const fileInfo = h('p', { class: 'hint mono', id: 'backend-module-info', 'aria-live': 'polite' });
  fileInput.after(fileInfo);
  fileInput.addEventListener('change', () => {
    const f = fileInput.files && fileInput.files[0];
    fileInfo.textContent = f ? `${f.name} · ${fmtBytes(f.size)}` : '';
  });
  const pages = field({ label: 'Memory limit (pages)', name: 'backend.memory_pages', type: 'number', value: backend.memory_pages ? String(backend.memory_pages) : '',
    hint: 'Optional. Pages of 64 KiB (16 pages = 1 MiB); empty uses the server’s default.', attrs: { min: 0, step: 1, inputmode: 'numeric', id: 'backend-memory-pages' } });
  const pagesInput = pages.querySelector('input');
  const pagesHint = pages.querySelector('.hint');
  const drawPages = () => {
    const n = Number(pagesInput.value);
    pagesHint.textContent = pagesInput.value.trim() && Number.isInteger(n) && n > 0
      ? `${fmtInt(n)} × 64 KiB = ${fmtBytes(n * 65536)}.` : 'Optional. Pages of 64 KiB (16 pages = 1 MiB); empty uses the server’s default.';
  };
  pagesInput.addEventListener('input', drawPages);
  drawPages();
  const wasmBox = h('div', { id: 'backend-wasm', class: 'grid-2' }, module, pages);

  const sync = () => {
    const w = wasmRadio.checked;
    httpBox.hidden = w;
    wasmBox.hidden = !w;
    urlInput.disabled = w;
    fileInput.disabled = !w;
    pagesInput.disabled = !w;
  };
  httpRadio.addEventListener('change', sync);
  wasmRadio.addEventListener('change', sync);
  sync();

  const timeout = field({ label: 'Timeout (ms)', name: 'timeout_ms', type: 'number', value: String(initial.timeout_ms || 10000), hint: 'A call cut at the timeout is billed as this many compute-ms.', attrs: { min: 1, step: 1, id: 'timeout-ms' } });
  const rate = field({ label: 'Rate limit (calls per second)', name: 'rate_limit_per_second', type: 'number', value: initial.rate_limit_per_second ? String(initial.rate_limit_per_second) : '',
    hint: 'Optional. Each API key’s limit for this version, to set it below the gateway’s default; empty or 0 uses the default.', attrs: { min: 0, step: 1, inputmode: 'numeric', id: 'rate-limit', placeholder: '0' } });

  async function read() {
    const out = { timeout_ms: intOrRaw(timeout.querySelector('input').value), rate_limit_per_second: intOrRaw(rate.querySelector('input').value) };
    if (!wasmRadio.checked) {
      out.backend = { type: 'http', url: urlInput.value.trim() };
      return out;
    }
    const file = fileInput.files && fileInput.files[0];
    let b64 = '';
    if (file) {
      try {
        b64 = await readBase64(file);
      } catch (e) {
        throw new Problem(0, { detail: 'The module file could not be read.', errors: { 'backend.module_base64': `could not be read: ${e.message}` } });
      }
    }
    out.backend = { type: 'wasm', module_base64: b64, memory_pages: intOrRaw(pagesInput.value) };
    return out;
  }
  return { el: h('div', { class: 'version-fields' }, kind, httpBox, wasmBox, h('div', { class: 'grid-2' }, timeout, rate)), read };
}

// uploading sends a version with its module, naming the module field when
// the server refuses the body as too large (it says so without a field).
async function uploading(fn) {
  try {
    return await fn();
  } catch (e) {
    if (e instanceof Problem && e.status === 413 && !Object.keys(e.fields).length) {
      e.fields = { 'backend.module_base64': `is too large to upload here (${e.message})` };
    }
    throw e;
  }
}

function shortSha(sha) {
  return `${String(sha || '').slice(0, 12)}…`;
}

// backendCell shows a version's backend: its URL, or its module's hash.
function backendCell(b) {
  if (!b) return h('td', null, '—');
  if (b.type === 'wasm') {
    return h('td', { class: 'mono small break' }, h('span', { class: 'backend-wasm', title: `sha256 ${b.module_sha256 || ''}` }, `wasm · sha256 ${shortSha(b.module_sha256)}`),
      b.memory_pages ? h('span', { class: 'muted backend-pages' }, ` · ${fmtInt(b.memory_pages)} pages (${fmtBytes(b.memory_pages * 65536)})`) : null);
  }
  return h('td', { class: 'mono small break' }, b.url || b.type || '—');
}

function descriptionEditor(value) {
  const preview = h('div', { class: 'markdown md-preview', id: 'description-preview', 'aria-live': 'polite' });
  const f = field({ label: 'Description', name: 'description', type: 'textarea', value, hint: 'Markdown: paragraphs, **bold**, *emphasis*, `code`, ``` code blocks ```, lists and [links](https://…).', attrs: { rows: 8, id: 'description' } });
  const ta = f.querySelector('textarea');
  const draw = () => preview.replaceChildren(ta.value.trim() ? renderMarkdown(ta.value) : h('p', { class: 'muted' }, 'The preview shows here.'));
  ta.addEventListener('input', draw);
  draw();
  return h('div', { class: 'md-editor' }, f, h('div', { class: 'md-preview-wrap' }, h('div', { class: 'preview-label' }, 'Preview'), preview));
}

// ---- New function ---------------------------------------------------------

export async function newFunctionPage(main, _p, ctx) {
  const pricing = pricingForm();
  const version = versionFields();
  const err = formError();
  const submit = h('button', { type: 'submit', class: 'btn btn-primary', id: 'create-function' }, 'Create function');
  const form = h('form', { class: 'form', id: 'function-form', novalidate: true }, err,
    field({ label: 'Name', name: 'name', required: true, hint: `2 to 60 characters of a–z, 0–9 and -. Called at /v1/invoke/${state.me.vendor.slug}/<name>.`, attrs: { autocomplete: 'off', id: 'function-name', spellcheck: 'false' } }),
    descriptionEditor(''),
    version.el,
    pricing.el,
    h('p', { class: 'muted small' }, 'This creates version 1, unpublished. Publish it from the next page when you are ready.'),
    submit);
  submitting(form, submit, async (fd) => {
    const body = { name: String(fd.get('name') || '').trim(), description: String(fd.get('description') || ''), ...(await version.read()), pricing: pricing.read() };
    const f = await uploading(() => api('POST', '/api/v1/functions', body));
    toast(`Created ${f.name} v1`);
    ctx.navigate(`/vendor/functions/${enc(f.id)}`);
  });
  mount(main,
    h('nav', { class: 'crumbs', 'aria-label': 'Breadcrumb' }, h('a', { href: '/vendor', 'data-link': '' }, 'My functions'), ' / new'),
    h('header', { class: 'page-head' }, h('h1', null, 'Publish a function'), h('p', { class: 'muted' }, 'Describe it, point it at your backend or upload a WebAssembly module, and price it.')),
    h('section', { class: 'panel' }, form));
}

// ---- A vendor's function ----------------------------------------------------

export async function vendorFunctionPage(main, [id], ctx) {
  const fn = await api('GET', `/api/v1/functions/${enc(id)}`);
  if (!ctx.alive()) return;
  const reload = () => vendorFunctionPage(main, [id], ctx).catch((e) => toast(e.message));
  const stats = h('div', { id: 'function-stats' });
  const picker = h('div');
  let range = 'week';

  async function drawStats() {
    mount(picker, rangePicker(range, (r) => { range = r; drawStats().catch((e) => toast(e.message)); }));
    const b = buckets(range);
    const q = query({ from: b.from, to: b.to, granularity: b.granularity });
    let rows;
    let lat = null;
    try {
      rows = asList(await api('GET', `/api/v1/vendor/usage${q}`));
    } catch (e) {
      if (e instanceof Problem && e.status === 404) { mount(stats, notAvailable('Usage')); return; }
      throw e;
    }
    try {
      lat = asList(await api('GET', `/api/v1/vendor/functions/${enc(fn.id)}/latency${q}`));
    } catch (e) {
      if (!(e instanceof Problem && e.status === 404)) throw e;
    }
    if (!ctx.alive()) return;
    const full = `${fn.vendor}/${fn.name}`;
    rows = rows.filter((r) => (r.function_id ? r.function_id === fn.id : r.function === full || r.function === fn.name));
    const calls = seriesBy(rows, b, 'calls', () => 'Calls')[0];
    const errors = seriesBy(rows, b, 'errors', () => 'Errors')[0];
    const totalCalls = rows.reduce((a, r) => a + Number(r.calls || 0), 0);
    const totalErr = rows.reduce((a, r) => a + Number(r.errors || 0), 0);
    const zeros = () => b.list.map(() => 0);
    const errRate = { name: 'Error rate', values: b.list.map((_, i) => (calls && calls.values[i] ? (100 * ((errors && errors.values[i]) || 0)) / calls.values[i] : null)) };
    const index = new Map(b.list.map((t, i) => [t, i]));
    const p50 = { name: 'p50', values: b.list.map(() => null) };
    const p99 = { name: 'p99', values: b.list.map(() => null) };
    for (const p of lat || []) {
      const i = index.get(bucketOf(p.period_start, b.granularity));
      if (i !== undefined && p.calls > 0) { p50.values[i] = Number(p.p50_ms); p99.values[i] = Number(p.p99_ms); }
    }
    const opts = { bucketList: b.list, granularity: b.granularity };
    mount(stats,
      h('div', { class: 'stats' },
        h('div', { class: 'stat' }, h('div', { class: 'stat-label' }, 'Calls'), h('div', { class: 'stat-value', id: 'fn-calls' }, fmtInt(totalCalls))),
        h('div', { class: 'stat' }, h('div', { class: 'stat-label' }, 'Error rate'), h('div', { class: 'stat-value', id: 'fn-errors' }, totalCalls ? `${((100 * totalErr) / totalCalls).toFixed(1)}%` : '—')),
        h('div', { class: 'stat' }, h('div', { class: 'stat-label' }, 'Revenue (gross)'), h('div', { class: 'stat-value', id: 'fn-revenue' }, costByCurrency(rows)))),
      h('div', { class: 'charts' },
        timeChart({ ...opts, title: 'Calls', series: [calls || { name: 'Calls', values: zeros() }], kind: 'bar', integer: true, fmt: (v) => fmtInt(Math.round(v)), id: 'chart-fn-calls' }),
        timeChart({ ...opts, title: 'Error rate (status 5xx)', series: [errRate], kind: 'line', empty: totalCalls === 0, fmt: (v) => `${Number(v).toFixed(v > 0 && v < 1 ? 2 : 1)}%`, id: 'chart-fn-errors' }),
        lat === null ? h('figure', { class: 'chart' }, h('figcaption', null, 'Compute-ms p50 / p99'), notAvailable('Latency'))
          : timeChart({ ...opts, title: 'Compute-ms p50 / p99', series: [p50, p99], kind: 'line', empty: totalCalls === 0, integer: true, fmt: (v) => `${fmtInt(Math.round(v))} ms`, id: 'chart-fn-latency' }),
        costCharts(rows, b, { title: 'Revenue (gross)', id: 'chart-fn-revenue', keyOf: () => 'Revenue (gross)', placeholder: true })));
  }

  // Description.
  const descErr = formError();
  const saveDesc = h('button', { type: 'submit', class: 'btn', id: 'save-description' }, 'Save description');
  const descForm = h('form', { class: 'form', id: 'description-form', novalidate: true }, descErr, descriptionEditor(fn.description), saveDesc);
  submitting(descForm, saveDesc, async (fd) => {
    await api('PATCH', `/api/v1/functions/${enc(fn.id)}`, { description: String(fd.get('description') || '') });
    toast('Description saved');
  });

  // Versions.
  const versionsTable = h('div', { class: 'table-wrap' }, h('table', { class: 'table', id: 'versions-table' },
    h('thead', null, h('tr', null, ['Version', 'Backend', 'Pricing', 'Timeout', 'Rate limit', 'Created', ''].map((t) => h('th', { scope: 'col' }, t)))),
    h('tbody', null, [...fn.versions].reverse().map((v) => {
      const live = fn.published_version === v.version;
      const pub = h('button', { type: 'button', class: 'btn btn-small', dataset: { publish: String(v.version) }, 'aria-label': `Publish version ${v.version}` }, 'Publish');
      pub.addEventListener('click', () => busy(pub, async () => {
        try {
          await api('POST', `/api/v1/functions/${enc(fn.id)}/publish`, { version: v.version });
          toast(`Version ${v.version} is live`);
          await reload();
        } catch (e) { toast(e.message); }
      }));
      return h('tr', { dataset: { version: String(v.version) } },
        h('th', { scope: 'row' }, `v${v.version}`, live ? h('span', { class: 'badge badge-good' }, ' live') : null),
        backendCell(v.backend),
        h('td', { class: 'small' }, pricingSummary(v.pricing)),
        h('td', null, `${fmtInt(v.timeout_ms)} ms`),
        h('td', { class: 'rate-limit' }, v.rate_limit_per_second ? `${fmtInt(v.rate_limit_per_second)}/s` : h('span', { class: 'muted' }, 'default')),
        h('td', null, fmtTime(v.created_at)),
        h('td', null, live ? null : pub));
    }))));

  const unpublish = h('button', { type: 'button', class: 'btn btn-danger', id: 'unpublish' }, 'Unpublish');
  unpublish.addEventListener('click', () => busy(unpublish, async () => {
    try {
      await api('POST', `/api/v1/functions/${enc(fn.id)}/unpublish`);
      toast('Unpublished: calls now get 404');
      await reload();
    } catch (e) { toast(e.message); }
  }));

  // New version.
  const latest = fn.versions[fn.versions.length - 1] || {};
  const pricing = pricingForm(latest.pricing || {});
  const verErr = formError();
  const addVer = h('button', { type: 'submit', class: 'btn btn-primary', id: 'create-version' }, 'Create version');
  const version = versionFields(latest);
  const verForm = h('form', { class: 'form', id: 'version-form', novalidate: true }, verErr, version.el, pricing.el,
    h('p', { class: 'muted small' }, 'Versions are immutable. A new version is not live until you publish it; callers can pin any version that was ever published with @version.'), addVer);
  submitting(verForm, addVer, async () => {
    const body = { ...(await version.read()), pricing: pricing.read() };
    const v = await uploading(() => api('POST', `/api/v1/functions/${enc(fn.id)}/versions`, body));
    toast(`Created version ${v.version}`);
    await reload();
  });

  const logs = logPanel(fn, ctx);
  const publicHref = `/functions/${enc(fn.vendor)}/${enc(fn.name)}`;
  mount(main,
    h('nav', { class: 'crumbs', 'aria-label': 'Breadcrumb' }, h('a', { href: '/vendor', 'data-link': '' }, 'My functions'), ` / ${fn.name}`),
    h('header', { class: 'page-head row' },
      h('div', null, h('h1', null, fn.name), h('p', null, publishedBadge(fn), ' ',
        fn.published_version ? h('a', { href: publicHref, 'data-link': '' }, 'View in the catalog') : h('span', { class: 'muted' }, 'Not in the catalog: publish a version.'))),
      fn.published_version ? unpublish : null),
    h('section', { class: 'panel' }, h('div', { class: 'panel-head' }, h('h2', null, 'Calls, latency and revenue'), picker), stats),
    h('section', { class: 'panel' }, h('h2', null, 'Versions'), versionsTable),
    logs ? logs.el : null,
    h('section', { class: 'panel' }, h('h2', null, 'Description'), descForm),
    h('section', { class: 'panel' }, h('h2', null, 'New version'), verForm));
  await Promise.all([drawStats(), logs ? logs.load() : null]);
}

// logPanel is the log viewer of a function with wasm versions (null for
// http-only functions): the recent stderr and runtime lines of one version,
// newest last. It stays hidden when the server has no log route.
function logPanel(fn, ctx) {
  const versions = fn.versions.filter((v) => v.backend && v.backend.type === 'wasm');
  if (!versions.length) return null;
  const live = versions.find((v) => v.version === fn.published_version);
  const initial = (live || versions[versions.length - 1]).version;
  const select = h('select', { id: 'log-version', class: 'short-select' }, [...versions].reverse().map((v) =>
    h('option', { value: String(v.version), selected: v.version === initial }, `v${v.version}${v.version === fn.published_version ? ' (live)' : ''}`)));
  const refresh = h('button', { type: 'button', class: 'btn btn-small', id: 'log-refresh' }, 'Refresh');
  const status = h('span', { class: 'muted small', id: 'log-status', role: 'status' });
  const view = h('div', { class: 'log-view', id: 'log-lines', tabindex: '0', 'aria-label': 'Log lines, newest last' });
  const el = h('section', { class: 'panel', id: 'log-panel', hidden: true, dataset: { state: 'loading' } },
    h('div', { class: 'panel-head' }, h('h2', null, 'Logs'),
      h('div', { class: 'log-tools' }, h('label', { for: select.id }, 'Version'), select, refresh)),
    h('p', { class: 'muted small' }, 'What the module wrote to stderr and the runtime’s notes on failed calls, kept for a while on the gateways. Times are yours; newest last. ', status),
    view);
  let seq = 0;
  async function load() {
    const mine = ++seq;
    let lines;
    try {
      lines = asList(await api('GET', `/api/v1/functions/${enc(fn.id)}/logs${query({ version: select.value })}`));
    } catch (e) {
      if (mine !== seq || !ctx.alive()) return;
      if (e instanceof Problem && e.status === 404) { el.hidden = true; el.dataset.state = 'unavailable'; return; }
      el.hidden = false;
      el.dataset.state = 'error';
      mount(view, h('p', { class: 'notice notice-bad' }, `The log could not be read: ${e.message}`));
      return;
    }
    if (mine !== seq || !ctx.alive()) return;
    el.hidden = false;
    el.dataset.state = 'loaded';
    status.textContent = `Updated ${new Date().toLocaleTimeString()}.`;
    const sorted = lines.map((l, i) => ({ l, i, t: Date.parse(l.time) || 0 })).sort((a, b) => a.t - b.t || a.i - b.i).map((x) => x.l);
    if (!sorted.length) {
      mount(view, h('p', { class: 'empty', id: 'log-empty' }, 'No log lines yet. Lines appear after calls to this version that write to stderr or fail.'));
      return;
    }
    mount(view, h('ol', { class: 'log-lines' }, sorted.map((l) => h('li', { class: 'log-line', dataset: { source: l.source || '' } },
      h('time', { class: 'log-time', datetime: l.time || '' }, fmtLogTime(l.time)),
      h('span', { class: ['badge', 'log-source', l.source === 'runtime' ? 'badge-warn' : 'badge-muted'] }, l.source || '?'),
      h('span', { class: 'log-inv', title: 'X-Invocation-Id' }, l.invocation_id || '—'),
      h('span', { class: 'log-text' }, l.text)))));
    view.scrollTop = view.scrollHeight;
  }
  select.addEventListener('change', () => load().catch((e) => toast(e.message)));
  refresh.addEventListener('click', () => busy(refresh, () => load().catch((e) => toast(e.message))));
  return { el, load };
}

function fmtLogTime(iso) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '—';
  return d.toLocaleString(undefined, { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit' });
}

// ---- Statements -----------------------------------------------------------

export async function statementsPage(main, _p, ctx) {
  const slot = h('div', { id: 'statements' });
  const stripe = h('div', { id: 'stripe-slot' });
  mount(main, h('header', { class: 'page-head' }, h('h1', null, 'Statements'),
    h('p', { class: 'muted' }, 'What your functions earned each month: gross, the platform fee, and your net payout.')), stripe, slot);
  let sts;
  try {
    sts = asList(await api('GET', '/api/v1/vendor/statements'));
  } catch (e) {
    if (e instanceof Problem && e.status === 404) { mount(slot, notAvailable('Statements')); return; }
    throw e;
  }
  if (!ctx.alive()) return;
  const payouts = state.me && state.me.vendor ? state.me.vendor.payouts : 'unavailable';
  if (payouts === 'unavailable') {
    mount(stripe, h('section', { class: 'panel' }, h('h2', null, 'Payouts'),
      h('p', { class: 'muted', id: 'payouts-unavailable' }, 'Payouts through Stripe are not configured on this server; statements still show what you earned.')));
  }
  const onboard = h('button', { type: 'button', class: 'btn btn-primary', id: 'stripe-onboard' }, payouts === 'connected' ? 'Update payout details' : 'Set up payouts with Stripe');
  const onboardErr = h('p', { class: 'field-error', role: 'alert' });
  onboard.addEventListener('click', () => busy(onboard, async () => {
    try {
      const res = await api('POST', '/api/v1/vendor/stripe/onboard', { return_url: `${location.origin}/statements` });
      const url = new URL(res.url, location.href);
      if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new Problem(0, { detail: 'Stripe answered an unexpected address.' });
      location.assign(url.href);
    } catch (e) {
      onboardErr.textContent = e instanceof Problem && e.status === 404 ? 'Stripe payouts are not configured on this server.' : e.message;
    }
  }));
  if (payouts !== 'unavailable') {
    mount(stripe, h('section', { class: 'panel panel-row' },
      h('div', null, h('h2', null, 'Payouts'), h('p', { class: 'muted' }, payouts === 'connected'
        ? 'Your Stripe account is connected: net earnings are transferred after each paid invoice.'
        : 'Connect a Stripe account to receive your net earnings each month.'), onboardErr), onboard));
  }
  if (!sts.length) { mount(slot, h('p', { class: 'panel empty' }, 'No statements yet: they appear once your functions’ first month is invoiced.')); return; }
  const payout = (st) => h('span', { class: ['badge', { paid: 'badge-good', partial: 'badge-warn', pending: 'badge-muted' }[st] || 'badge-muted'] }, st || 'unknown');
  mount(slot, h('section', { class: 'panel' }, h('div', { class: 'table-wrap' }, h('table', { class: 'table', id: 'statements-table' },
    h('thead', null, h('tr', null, ['Month', 'Gross', 'Platform fee', 'Net', 'Payout'].map((t) => h('th', { scope: 'col' }, t)))),
    h('tbody', null, sts.map((st) => h('tr', null,
      h('th', { scope: 'row' }, fmtMonth(st.period_start)),
      h('td', { class: 'num' }, moneyString(st.gross, st.currency)),
      h('td', { class: 'num' }, moneyString(st.platform_fee, st.currency)),
      h('td', { class: 'num strong' }, moneyString(st.net, st.currency)),
      h('td', null, payout(st.payout_status)))))))));
}

