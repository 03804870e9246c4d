// Vendor pages: becoming a vendor, the list of one's functions, publishing a
// function and its versions, a function's charts, and monthly statements.

import { api, asList, query, Problem } from './api.js';
import { h, mount, field, formError, showErrors, clearErrors, busy, toast, fmtTime, fmtMonth, fmtInt } from './dom.js';
import { state } from './state.js';
import { render as renderMarkdown } from './markdown.js';
import { pricingForm, pricingSummary, intOrRaw } from './pricing.js';
import { moneyString, money, sum } from './money.js';
import { timeChart, buckets, bucketOf } from './charts.js';
import { notAvailable, rangePicker, seriesBy } from './consumer.js';

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
      h('p', { class: 'lead' }, 'Package one thing you do well as a function: an HTTPS endpoint you host. Set a price per call and per compute-millisecond; fnmarket handles keys, metering, invoices and payouts.'),
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

// versionFields are the inputs of a version: backend URL and timeout.
function versionFields(initial = {}) {
  return h('div', { class: 'grid-2' },
    field({ label: 'Backend URL', name: 'backend.url', type: 'url', required: true, value: (initial.backend && initial.backend.url) || '', hint: 'The HTTPS endpoint fnmarket forwards calls to.', attrs: { placeholder: 'https://api.example.com/scan', id: 'backend-url', spellcheck: 'false' } }),
    field({ label: 'Timeout (ms)', name: 'timeout_ms', type: 'number', value: String(initial.timeout_ms || 10000), hint: 'A call cut at the timeout is billed as this many compute-ms.', attrs: { min: 1, step: 1, id: 'timeout-ms' } }));
}

function readVersion(fd, pricing) {
  return { backend: { type: 'http', url: String(fd.get('backend.url') || '').trim() }, timeout_ms: intOrRaw(fd.get('timeout_ms')), pricing: pricing.read() };
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
  const err = formError();
  const submit = h('button', { type: 'submit', class: 'btn btn-primary', id: 'create-function' }, 'Create function');
  const form = h('form', { class: 'form', id: 'function-form', novalidate: true }, err,
    field({ label: 'Name', name: 'name', required: true, hint: `2 to 60 characters of a–z, 0–9 and -. Called at /v1/invoke/${state.me.vendor.slug}/<name>.`, attrs: { autocomplete: 'off', id: 'function-name', spellcheck: 'false' } }),
    descriptionEditor(''),
    versionFields(),
    pricing.el,
    h('p', { class: 'muted small' }, 'This creates version 1, unpublished. Publish it from the next page when you are ready.'),
    submit);
  submitting(form, submit, async (fd) => {
    const f = await api('POST', '/api/v1/functions', { name: String(fd.get('name') || '').trim(), description: String(fd.get('description') || ''), ...readVersion(fd, pricing) });
    toast(`Created ${f.name} v1`);
    ctx.navigate(`/vendor/functions/${enc(f.id)}`);
  });
  mount(main,
    h('nav', { class: 'crumbs', 'aria-label': 'Breadcrumb' }, h('a', { href: '/vendor', 'data-link': '' }, 'My functions'), ' / new'),
    h('header', { class: 'page-head' }, h('h1', null, 'Publish a function'), h('p', { class: 'muted' }, 'Describe it, point it at your backend and price it.')),
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
    const currency = (rows[0] && rows[0].currency) || 'USD';
    const calls = seriesBy(rows, b, 'calls', () => 'Calls')[0];
    const errors = seriesBy(rows, b, 'errors', () => 'Errors')[0];
    const revenue = seriesBy(rows, b, 'cost', () => 'Revenue (gross)');
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
        h('div', { class: 'stat' }, h('div', { class: 'stat-label' }, 'Revenue (gross)'), h('div', { class: 'stat-value', id: 'fn-revenue' }, money(sum(rows.map((r) => r.cost)), currency, 2)))),
      h('div', { class: 'charts' },
        timeChart({ ...opts, title: 'Calls', series: [calls || { name: 'Calls', values: zeros() }], kind: 'bar', integer: true, fmt: (v) => fmtInt(Math.round(v)), id: 'chart-fn-calls' }),
        timeChart({ ...opts, title: 'Error rate (status 5xx)', series: [errRate], kind: 'line', empty: totalCalls === 0, fmt: (v) => `${Number(v).toFixed(v > 0 && v < 1 ? 2 : 1)}%`, id: 'chart-fn-errors' }),
        lat === null ? h('figure', { class: 'chart' }, h('figcaption', null, 'Compute-ms p50 / p99'), notAvailable('Latency'))
          : timeChart({ ...opts, title: 'Compute-ms p50 / p99', series: [p50, p99], kind: 'line', empty: totalCalls === 0, integer: true, fmt: (v) => `${fmtInt(Math.round(v))} ms`, id: 'chart-fn-latency' }),
        timeChart({ ...opts, title: 'Revenue (gross)', series: revenue.length ? revenue : [{ name: 'Revenue (gross)', values: zeros() }], kind: 'line',
          fmt: (v) => `${currency === 'USD' ? '$' : ''}${Number(v).toFixed(v && v < 0.01 ? 6 : 2)}`, id: 'chart-fn-revenue' })));
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
    h('thead', null, h('tr', null, ['Version', 'Backend', 'Pricing', 'Timeout', 'Created', ''].map((t) => h('th', { scope: 'col' }, t)))),
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
        h('td', { class: 'mono small break' }, (v.backend && (v.backend.url || v.backend.type)) || '—'),
        h('td', { class: 'small' }, pricingSummary(v.pricing)),
        h('td', null, `${fmtInt(v.timeout_ms)} ms`),
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
  const verForm = h('form', { class: 'form', id: 'version-form', novalidate: true }, verErr, versionFields(latest), pricing.el,
    h('p', { class: 'muted small' }, 'Versions are immutable. A new version is not live until you publish it; callers can pin any version that was ever published with @version.'), addVer);
  submitting(verForm, addVer, async (fd) => {
    const v = await api('POST', `/api/v1/functions/${enc(fn.id)}/versions`, readVersion(fd, pricing));
    toast(`Created version ${v.version}`);
    await reload();
  });

  const publicHref = `/functions/${enc(fn.vendor)}/${enc(fn.name)}`;
  mount(main,
    h('nav', { class: 'crumbs', 'aria-label': 'Breadcrumb' }, h('a', { href: '/vendor', 'data-link': '' }, 'My functions'), ` / ${fn.name}`),
    h('header', { class: 'page-head row' },
      h('div', null, h('h1', null, fn.name), h('p', null, publishedBadge(fn), ' ',
        fn.published_version ? h('a', { href: publicHref, 'data-link': '' }, 'View in the catalog') : h('span', { class: 'muted' }, 'Not in the catalog: publish a version.'))),
      fn.published_version ? unpublish : null),
    h('section', { class: 'panel' }, h('div', { class: 'panel-head' }, h('h2', null, 'Calls, latency and revenue'), picker), stats),
    h('section', { class: 'panel' }, h('h2', null, 'Versions'), versionsTable),
    h('section', { class: 'panel' }, h('h2', null, 'Description'), descForm),
    h('section', { class: 'panel' }, h('h2', null, 'New version'), verForm));
  await drawStats();
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

