// Pricing: the form vendors fill in (flat or graduated per-call price,
// per-compute-ms price, monthly free calls) with a live preview of what 10k
// and 1M calls a month would cost, quoted by the API (POST
// /api/v1/pricing/quote, billing's own rule), and read-only summaries. No
// money is computed here; figures are only formatted.

import { h, field, uid } from './dom.js';
import { moneyString } from './money.js';
import { api, Problem } from './api.js';

// previewCalls are the monthly volumes the preview prices.
export const previewCalls = [10000, 1000000];

// quoteDelayMs is how long the preview waits after a keystroke before it
// asks the API for a quote.
export const quoteDelayMs = 250;

function previewLabel(calls) {
  return calls >= 1000000 ? `${calls / 1000000}M` : `${calls / 1000}k`;
}

// intOrRaw sends whole numbers as numbers and anything else as typed, so the
// server names the field in its problem answer.
export function intOrRaw(v) {
  const t = String(v ?? '').trim();
  if (t === '') return undefined;
  return /^-?\d{1,15}$/.test(t) ? Number(t) : t;
}

// pricingForm builds the pricing fieldset and its preview. initial is a
// pricing object as the API returns it.
export function pricingForm(initial = {}) {
  const p = { currency: 'USD', per_call: '0.0001', per_compute_ms: '0.000002', free_calls_per_month: 100, ...initial };
  const currency = field({ label: 'Currency', name: 'pricing.currency', value: p.currency || 'USD', attrs: { maxlength: 3, autocomplete: 'off', class: 'short' } });
  const perCall = field({ label: 'Price per call', name: 'pricing.per_call', value: p.per_call ?? '', hint: 'A decimal, e.g. 0.0001', attrs: { inputmode: 'decimal', autocomplete: 'off' } });
  const perMs = field({ label: 'Price per compute-millisecond', name: 'pricing.per_compute_ms', value: p.per_compute_ms ?? '', hint: 'Charged on every billed call, free ones included.', attrs: { inputmode: 'decimal', autocomplete: 'off' } });
  const free = field({ label: 'Free calls per month', name: 'pricing.free_calls_per_month', type: 'number', value: String(p.free_calls_per_month ?? 0), hint: 'Free calls waive the per-call price only.', attrs: { min: 0, step: 1, inputmode: 'numeric' } });

  const groupName = uid('model');
  const useTiers = Array.isArray(p.tiers) && p.tiers.length > 0;
  const flatRadio = h('input', { type: 'radio', name: groupName, value: 'flat', id: `${groupName}-flat`, checked: !useTiers });
  const tierRadio = h('input', { type: 'radio', name: groupName, value: 'tiers', id: `${groupName}-tiers`, checked: useTiers });
  const model = h('fieldset', { class: 'radio-row' }, h('legend', null, 'Per-call price'),
    h('label', { for: flatRadio.id }, flatRadio, ' One price per call'),
    h('label', { for: tierRadio.id }, tierRadio, ' Graduated tiers (cheaper at volume)'));

  const tierRows = h('div', { class: 'tiers', dataset: { field: 'pricing.tiers' } });
  const tierErr = h('p', { class: 'field-error', dataset: { errorFor: 'pricing.tiers' } });
  const addTier = h('button', { type: 'button', class: 'btn btn-small' }, 'Add a tier');
  const tiersBox = h('div', { class: 'tiers-box' }, tierRows, tierErr, addTier);
  const tiers = [];

  function drawTiers() {
    tierRows.replaceChildren();
    tiers.forEach((t, i) => {
      const last = i === tiers.length - 1;
      const upTo = field({ label: last ? 'Calls' : 'Up to call number', name: `pricing.tiers[${i}].up_to`, type: 'number', value: last ? '' : t.up_to, attrs: { min: 1, step: 1 } });
      const price = field({ label: 'Price per call', name: `pricing.tiers[${i}].per_call`, value: t.per_call, attrs: { inputmode: 'decimal', autocomplete: 'off' } });
      const upIn = upTo.querySelector('input');
      const priceIn = price.querySelector('input');
      if (last) { upIn.disabled = true; upIn.placeholder = 'and beyond'; }
      upIn.addEventListener('input', () => { t.up_to = upIn.value; update(); });
      priceIn.addEventListener('input', () => { t.per_call = priceIn.value; update(); });
      const rm = h('button', { type: 'button', class: 'btn btn-small btn-ghost', 'aria-label': `Remove tier ${i + 1}`, disabled: tiers.length === 1,
        on: { click: () => { tiers.splice(i, 1); drawTiers(); update(); } } }, 'Remove');
      tierRows.appendChild(h('div', { class: 'tier-row' }, h('span', { class: 'tier-n' }, `Tier ${i + 1}`), upTo, price, rm));
    });
  }
  addTier.addEventListener('click', () => {
    const prevUp = tiers.length > 1 ? Number(tiers[tiers.length - 2].up_to || 0) : 0;
    tiers.splice(Math.max(tiers.length - 1, 0), 0, { up_to: String((prevUp || 0) + 100000), per_call: (tiers[tiers.length - 1] || {}).per_call || '0.0001' });
    drawTiers();
    update();
  });
  if (useTiers) p.tiers.forEach((t) => tiers.push({ up_to: String(t.up_to || ''), per_call: t.per_call }));
  else tiers.push({ up_to: '100000', per_call: p.per_call || '0.0001' }, { up_to: '', per_call: '0.00005' });
  drawTiers();

  const avgMs = h('input', { type: 'text', id: uid('avg'), value: '50', inputmode: 'numeric', class: 'short', autocomplete: 'off' });
  const previewBody = h('tbody', { 'aria-live': 'polite' });
  const previewNote = h('p', { class: 'hint', role: 'status' });
  const preview = h('section', { class: 'preview', 'aria-labelledby': `${avgMs.id}-h` },
    h('h3', { id: `${avgMs.id}-h` }, 'What a consumer would pay'),
    h('p', { class: 'preview-assume' }, h('label', { for: avgMs.id }, 'Assuming an average of '), avgMs, ' compute-ms per call (whole ms), in one month:'),
    h('div', { class: 'table-wrap' }, h('table', { class: 'table preview-table', id: 'pricing-preview' },
      h('thead', null, h('tr', null, ['Calls', 'Per-call part', 'Compute part', 'Total (exact)', 'Billed'].map((t) => h('th', { scope: 'col' }, t)))),
      previewBody)),
    previewNote);

  const inputs = () => ({
    currency: currency.querySelector('input').value.trim().toUpperCase() || 'USD',
    per_call: perCall.querySelector('input').value.trim(),
    per_compute_ms: perMs.querySelector('input').value.trim(),
    free: free.querySelector('input').value.trim(),
  });

  function read() {
    const v = inputs();
    const out = { currency: v.currency, per_compute_ms: v.per_compute_ms, free_calls_per_month: intOrRaw(v.free) ?? 0 };
    if (tierRadio.checked) {
      out.tiers = tiers.map((t, i) => ({ up_to: i === tiers.length - 1 ? 0 : intOrRaw(t.up_to) ?? 0, per_call: String(t.per_call || '').trim() }));
    } else {
      out.per_call = v.per_call;
    }
    return out;
  }

  // The preview asks the API for a quote (the rule billing uses) a short
  // while after the last keystroke; an answer to an older request is dropped.
  const rows = new Map(previewCalls.map((calls) => {
    const cells = { label: h('span', { class: 'muted small' }), per: h('td', { class: 'per-call' }), compute: h('td', { class: 'compute' }), exact: h('td', { class: 'exact' }), billed: h('td', { class: 'billed' }) };
    const tr = h('tr', { dataset: { calls: String(calls) } }, h('th', { scope: 'row' }, previewLabel(calls), cells.label), cells.per, cells.compute, cells.exact, cells.billed);
    previewBody.appendChild(tr);
    return [calls, cells];
  }));
  let timer = 0;
  let seq = 0;
  const quoteNote = 'Free calls waive the per-call price only; compute is charged on every call. "Billed" is the exact total rounded half-even to cents, once per invoice line.';

  function pending() {
    for (const cells of rows.values()) {
      for (const k of ['per', 'compute', 'exact', 'billed']) cells[k].textContent = '…';
    }
    preview.setAttribute('aria-busy', 'true');
  }

  function blank() {
    for (const cells of rows.values()) {
      cells.label.textContent = '';
      for (const k of ['per', 'compute', 'exact', 'billed']) cells[k].textContent = '—';
    }
  }

  // showPreviewProblems names the fields the API refused next to them (the
  // pricing fields) or in the note (the preview's own inputs).
  function showPreviewProblems(problem) {
    for (const slot of el.querySelectorAll('.field-error')) {
      if ((slot.dataset.errorFor || '').startsWith('pricing')) slot.textContent = '';
    }
    const notes = [];
    for (const [name, msg] of Object.entries(problem.fields || {})) {
      const slot = name.startsWith('pricing') ? errorSlot(name) : null;
      if (slot) slot.textContent = slot.textContent ? `${slot.textContent}; ${msg}` : msg.charAt(0).toUpperCase() + msg.slice(1);
      else notes.push(`${name === 'compute_ms_per_call' ? 'Average compute-ms' : name} ${msg}`);
    }
    const inline = el.querySelectorAll('.field-error:not(:empty)').length > 0;
    previewNote.textContent = `No preview: ${notes.length ? notes.join('; ') : inline ? 'fix the fields marked above.' : problem.message}`;
  }

  function errorSlot(name) {
    for (const slot of el.querySelectorAll('[data-error-for]')) if (slot.dataset.errorFor === name) return slot;
    const cut = name.replace(/(\[\d+\])?\.[^.[\]]+$|\[\d+\]$/, '');
    return cut && cut !== name ? errorSlot(cut) : null;
  }

  async function refresh() {
    const my = ++seq;
    const pricing = read();
    const ms = intOrRaw(avgMs.value) ?? 0;
    let quotes;
    try {
      quotes = await Promise.all(previewCalls.map((calls) => api('POST', '/api/v1/pricing/quote', { pricing, calls: Number(calls), compute_ms_per_call: ms })));
    } catch (e) {
      if (my !== seq) return;
      preview.removeAttribute('aria-busy');
      blank();
      if (e instanceof Problem) showPreviewProblems(e);
      else previewNote.textContent = 'No preview: the quote could not be computed.';
      return;
    }
    if (my !== seq) return;
    preview.removeAttribute('aria-busy');
    showPreviewProblems({ fields: {} });
    previewNote.textContent = quoteNote;
    quotes.forEach((q, i) => {
      const cells = rows.get(previewCalls[i]);
      cells.label.textContent = q.free_calls > 0 ? ` (${Number(q.free_calls).toLocaleString('en-US')} free)` : '';
      cells.per.textContent = moneyString(q.per_call_cost, q.currency, 2);
      cells.compute.textContent = moneyString(q.compute_cost, q.currency, 2);
      cells.exact.textContent = moneyString(q.total, q.currency, 2);
      cells.billed.textContent = moneyString(q.total_rounded, q.currency, 2);
    });
  }

  function update() {
    perCall.hidden = tierRadio.checked;
    tiersBox.hidden = !tierRadio.checked;
    clearTimeout(timer);
    seq += 1; // an answer still on its way is stale now
    pending();
    timer = setTimeout(refresh, quoteDelayMs);
  }

  const el = h('fieldset', { class: 'pricing' }, h('legend', null, 'Pricing'),
    h('div', { class: 'grid-2' }, currency, free), model, perCall, tiersBox, perMs, preview);
  el.addEventListener('input', update);
  el.addEventListener('change', update);
  blank();
  update();
  return { el, read };
}

// pricingRows describes pricing as [label, value] pairs for a table.
export function pricingRows(p) {
  const cur = p.currency || 'USD';
  const rows = [];
  if (Array.isArray(p.tiers) && p.tiers.length) {
    let lo = 1;
    for (const t of p.tiers) {
      // Tiers count a month's billable calls, the ones after the free
      // calls (catalog.Tier): say so, not "calls".
      const label = t.up_to ? `Billable calls ${lo.toLocaleString('en-US')}–${Number(t.up_to).toLocaleString('en-US')}` : `Billable calls ${lo.toLocaleString('en-US')} and beyond`;
      rows.push([label, `${moneyString(t.per_call, cur, 2)} per call`]);
      lo = Number(t.up_to) + 1;
    }
  } else {
    rows.push(['Per call', moneyString(p.per_call, cur, 2)]);
  }
  rows.push(['Per compute-millisecond', moneyString(p.per_compute_ms, cur, 2)]);
  rows.push(['Free calls each month', Number(p.free_calls_per_month || 0).toLocaleString('en-US')]);
  return rows;
}

// pricingSummary is a one-line description of pricing for cards and lists.
export function pricingSummary(p) {
  if (!p) return '';
  const cur = p.currency || 'USD';
  const call = Array.isArray(p.tiers) && p.tiers.length ? `from ${moneyString(p.tiers[p.tiers.length - 1].per_call, cur, 2)}` : moneyString(p.per_call, cur, 2);
  const parts = [`${call} / call`, `${moneyString(p.per_compute_ms, cur, 2)} / compute-ms`];
  if (Number(p.free_calls_per_month) > 0) parts.push(`${Number(p.free_calls_per_month).toLocaleString('en-US')} free calls / month`);
  return parts.join(' · ');
}

// costEstimator is the function page's "what would it cost" box: calls in a
// month and compute-ms per call, quoted by the API at the published
// version's pricing (POST /api/v1/pricing/quote with the function's name).
export function costEstimator(fn) {
  const calls = h('input', { type: 'text', id: 'quote-calls', value: '10000', inputmode: 'numeric', class: 'short', autocomplete: 'off' });
  const ms = h('input', { type: 'text', id: 'quote-ms', value: '50', inputmode: 'numeric', class: 'short', autocomplete: 'off' });
  const cells = {};
  const row = (key, label) => { cells[key] = h('td', { dataset: { quote: key } }, '…'); return h('tr', null, h('th', { scope: 'row' }, label), cells[key]); };
  const table = h('table', { class: 'kv', id: 'fn-quote' }, h('tbody', null,
    row('free_calls', 'Free calls'), row('billable_calls', 'Billable calls'), row('per_call_cost', 'Per-call part'),
    row('compute_cost', 'Compute part'), row('total', 'Total (exact)'), row('total_rounded', 'Billed')));
  const note = h('p', { class: 'muted small', role: 'status', id: 'fn-quote-note' });
  const box = h('div', { class: 'quote', 'aria-live': 'polite' },
    h('h3', null, 'What would it cost?'),
    h('p', { class: 'preview-assume' }, h('label', { for: calls.id }, 'Calls in a month '), calls),
    h('p', { class: 'preview-assume' }, h('label', { for: ms.id }, 'Compute-ms per call '), ms),
    table, note);
  let timer = 0;
  let seq = 0;
  const show = (f) => { for (const [k, td] of Object.entries(cells)) td.textContent = f(k); };
  async function refresh() {
    const my = ++seq;
    let q;
    try {
      q = await api('POST', '/api/v1/pricing/quote', { function: `${fn.vendor}/${fn.name}`, version: fn.published_version, calls: intOrRaw(calls.value) ?? 0, compute_ms_per_call: intOrRaw(ms.value) ?? 0 });
    } catch (e) {
      if (my !== seq) return;
      box.removeAttribute('aria-busy');
      show(() => '—');
      const fields = Object.entries((e && e.fields) || {}).map(([k, m]) => `${{ calls: 'Calls', compute_ms_per_call: 'Compute-ms per call' }[k] || k} ${m}`);
      note.textContent = fields.length ? fields.join('; ') : (e && e.message) || 'The quote could not be computed.';
      return;
    }
    if (my !== seq) return;
    box.removeAttribute('aria-busy');
    show((k) => (typeof q[k] === 'number' ? q[k].toLocaleString('en-US') : moneyString(q[k], q.currency, 2)));
    note.textContent = 'Priced by the rule billing uses; "Billed" is the exact total rounded half-even to cents. Other calls of this function in the same month use up the free calls first.';
  }
  function update() {
    clearTimeout(timer);
    seq += 1;
    box.setAttribute('aria-busy', 'true');
    show(() => '…');
    timer = setTimeout(refresh, quoteDelayMs);
  }
  calls.addEventListener('input', update);
  ms.addEventListener('input', update);
  update();
  return box;
}
