// The consumer's billing page (standing, card, prepaid balance, the account's
// monthly spend cap, spend per key, the price of each function used this
// month) and the function page's "your next call" line. Every figure comes
// from the API as a decimal string and is only formatted here: no amount is
// computed in this script.

import { api, asList, query, Problem } from './api.js';
import { h, mount, field, formError, showErrors, clearErrors, busy, toast, fmtInt } from './dom.js';
import { moneyString } from './money.js';
import { parseThresholds, thresholdsInput, thresholdsText, explainUnknownThresholds } from './alerts.js';

const enc = encodeURIComponent;

// standingInfo describes each standing: its badge and what the consumer
// should do about it.
const standingInfo = {
  active: { label: 'Active', badge: 'badge-good' },
  free_only: {
    label: 'Free calls only', badge: 'badge-warn',
    notice: 'You have no way to pay yet, so only free calls are admitted: other calls are refused with 402 payment_required. Add a card or top up your prepaid balance to call paid functions.',
  },
  suspended: {
    label: 'Suspended', badge: 'badge-bad',
    notice: 'An invoice is past due: calls are refused with 402 payment_required until it is paid. Pay it from the invoice Stripe sent you, or add a card that can be charged.',
  },
};

function stat(label, value, id) {
  return h('div', { class: 'stat' }, h('div', { class: 'stat-label' }, label), h('div', { class: 'stat-value', id }, value));
}

// checkoutURL accepts only an http(s) address from the API before the
// browser is sent there.
function checkoutURL(res) {
  const url = new URL((res && res.url) || '', location.href);
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new Problem(0, { detail: 'The server answered an unexpected payment address.' });
  return url.href;
}

// monthStartISO is the start of the running UTC month (billing months are
// UTC), for the usage query.
function monthStartISO() {
  const now = new Date();
  return new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1)).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

export async function billingPage(main, _p, ctx) {
  const account = h('div', { id: 'billing-account' });
  const keys = h('div', { id: 'billing-keys' });
  const prices = h('div', { id: 'billing-functions' });
  mount(main,
    h('header', { class: 'page-head' }, h('h1', null, 'Billing'),
      h('p', { class: 'muted' }, 'Your standing, how you pay, what you have spent this month and what each function you use costs. Amounts are exact; invoices round each line to the cent.')),
    account,
    h('section', { class: 'panel' }, h('h2', null, 'API keys this month'), keys),
    h('section', { class: 'panel' }, h('h2', null, 'Prices of the functions you use'),
      h('p', { class: 'muted small' }, 'What your next call of each costs, at its place among your calls of it this month (free calls and tiers count per function and month).'), prices));
  await Promise.all([drawAccount(account, ctx), drawKeys(keys, ctx), drawPrices(prices, ctx)]);
}

// drawAccount shows GET /api/v1/billing with the card, top-up and cap forms.
async function drawAccount(slot, ctx, fresh) {
  let b = fresh;
  if (!b) {
    try {
      b = await api('GET', '/api/v1/billing');
    } catch (e) {
      if (e instanceof Problem && e.unavailable) { mount(slot, h('p', { class: 'notice', dataset: { unavailable: '' } }, 'Billing: not available on this server yet.')); return; }
      throw e;
    }
  }
  if (!ctx.alive()) return;
  const cur = b.currency || 'USD';
  const info = standingInfo[b.standing] || { label: b.standing || 'unknown', badge: 'badge-muted' };
  const pm = b.payment_method;
  const redraw = (next) => drawAccount(slot, ctx, next);

  mount(slot,
    info.notice ? h('section', { class: 'panel panel-warn', id: 'billing-standing-notice', role: 'alert', dataset: { standing: b.standing } },
      h('h2', null, b.standing === 'suspended' ? 'Your account is suspended' : 'Only free calls for now'),
      h('p', null, info.notice),
      h('div', { class: 'actions-row' }, cardButton(pm, 'standing-add-card', true),
        b.standing === 'suspended' ? h('a', { href: '/invoices', 'data-link': '', class: 'btn' }, 'See invoices') : h('button', { type: 'button', class: 'btn', id: 'standing-top-up', on: { click: focusTopUp } }, 'Top up'))) : null,
    h('section', { class: 'panel' }, h('h2', null, 'This month'),
      h('div', { class: 'stats' },
        stat('Standing', h('span', { class: ['badge', info.badge], dataset: { standing: b.standing || '' } }, info.label), 'billing-standing'),
        stat('Spent this month', moneyString(b.month_to_date, cur), 'billing-mtd'),
        stat('Prepaid balance', moneyString(b.balance, cur), 'billing-balance'),
        stat('Monthly spend cap', b.monthly_spend_cap ? moneyString(b.monthly_spend_cap, cur) : 'None', 'billing-cap'))),
    h('div', { class: 'layout-2' },
      h('div', null,
        h('section', { class: 'panel', id: 'billing-payment' }, h('h2', null, 'Payment method'),
          h('p', { id: 'billing-card' }, pm ? `${brandName(pm.brand)} ending in ${pm.last4}` : 'None'),
          h('p', { class: 'muted small' }, pm ? 'Invoices are charged to this card each month.' : 'Add a card to pay monthly invoices; until then you can still prepay.'),
          cardButton(pm, 'add-card', !pm)),
        topUpForm(cur)),
      capForm(b, cur, redraw)));
}

// focusTopUp brings the top-up form's amount into view and focus.
function focusTopUp() {
  const input = document.getElementById('topup-amount');
  if (!input) return;
  input.scrollIntoView({ block: 'center' });
  input.focus();
}

function brandName(brand) {
  const b = String(brand || 'card');
  return b.charAt(0).toUpperCase() + b.slice(1);
}

// cardButton starts Stripe Checkout (setup mode) to add or replace a card.
function cardButton(pm, id, primary) {
  const err = h('p', { class: 'field-error', role: 'alert', id: `${id}-error` });
  const btn = h('button', { type: 'button', class: ['btn', primary ? 'btn-primary' : null], id }, pm ? 'Replace card' : 'Add a card');
  btn.addEventListener('click', () => busy(btn, async () => {
    err.textContent = '';
    try {
      location.assign(checkoutURL(await api('POST', '/api/v1/billing/payment-method')));
    } catch (e) {
      err.textContent = e.message;
    }
  }));
  return h('div', { class: 'card-action' }, btn, err);
}

// topUpForm starts Stripe Checkout (payment mode) to buy prepaid credit.
function topUpForm(cur) {
  const err = formError();
  const submit = h('button', { type: 'submit', class: 'btn btn-primary', id: 'topup' }, 'Top up');
  const form = h('form', { class: 'form inline-form', id: 'topup-form', novalidate: true }, err,
    field({ label: `Amount (${cur})`, name: 'amount', required: true, hint: 'e.g. 20.00. Prepaid credit is spent before anything is invoiced.', attrs: { inputmode: 'decimal', autocomplete: 'off', id: 'topup-amount' } }),
    submit);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    clearErrors(form);
    const amount = String(new FormData(form).get('amount') || '').trim();
    await busy(submit, async () => {
      try {
        location.assign(checkoutURL(await api('POST', '/api/v1/billing/credits', { amount })));
      } catch (e) {
        if (!(e instanceof Problem)) throw e;
        showErrors(form, e);
      }
    });
  });
  return h('section', { class: 'panel', id: 'billing-topup' }, h('h2', null, 'Prepaid balance'), form);
}

// capForm sets or removes the account's monthly spend cap (PUT
// /api/v1/billing/spend-cap), which no call may take the month's spend past,
// and, where the server reports them (alert_thresholds in GET
// /api/v1/billing), the cap's alert thresholds.
function capForm(b, cur, redraw) {
  const alerts = Array.isArray(b.alert_thresholds);
  const err = formError();
  const save = h('button', { type: 'submit', class: 'btn btn-primary', id: 'save-cap' }, b.monthly_spend_cap ? 'Change cap' : 'Set cap');
  const remove = b.monthly_spend_cap ? h('button', { type: 'button', class: 'btn', id: 'remove-cap' }, 'Remove cap') : null;
  const form = h('form', { class: 'form inline-form', id: 'cap-form', novalidate: true }, err,
    field({ label: `Monthly spend cap (${cur})`, name: 'monthly_spend_cap', value: b.monthly_spend_cap || '', hint: 'A call is admitted only if its worst case still fits under the cap; otherwise it gets 402 spend_cap_reached. Keys may have their own, lower caps.',
      attrs: { inputmode: 'decimal', autocomplete: 'off', id: 'cap-amount' } }),
    alerts ? field({ label: 'Alert thresholds', name: 'alert_thresholds', value: thresholdsInput(b.alert_thresholds),
      hint: 'Percents of the cap at which a usage.threshold_reached webhook is sent, once a month each, e.g. 50, 80, 100.',
      attrs: { autocomplete: 'off', id: 'cap-thresholds', placeholder: '80, 100' } }) : null,
    h('div', { class: 'actions-row' }, save, remove));
  const put = async (btn, value) => busy(btn, async () => {
    clearErrors(form);
    const body = { monthly_spend_cap: value };
    const thresholds = alerts ? parseThresholds(new FormData(form).get('alert_thresholds')) : undefined;
    if (thresholds) body.alert_thresholds = thresholds;
    try {
      const next = await api('PUT', '/api/v1/billing/spend-cap', body);
      toast(value === null ? 'Spend cap removed' : 'Spend cap saved');
      await redraw(next);
    } catch (e) {
      if (!(e instanceof Problem)) throw e;
      showErrors(form, explainUnknownThresholds(e));
    }
  });
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const v = String(new FormData(form).get('monthly_spend_cap') || '').trim();
    put(save, v === '' ? null : v);
  });
  if (remove) remove.addEventListener('click', () => put(remove, null));
  return h('section', { class: 'panel', id: 'billing-cap-panel' }, h('h2', null, 'Account spend cap'),
    alerts ? h('p', { class: 'muted small', id: 'billing-alerts' },
      `Alerts at ${thresholdsText(b.alert_thresholds)} of the cap${b.monthly_spend_cap ? '' : ', once one is set'}: each sends a usage.threshold_reached event to your `,
      h('a', { href: '/webhook-endpoints', 'data-link': '' }, 'webhooks'), '.') : null,
    form);
}

// drawKeys lists the active keys with their caps and, when the API reports
// it, what each spent this month.
async function drawKeys(slot, ctx) {
  const keys = asList(await api('GET', '/api/v1/keys')).filter((k) => !k.revoked_at);
  if (!ctx.alive()) return;
  if (!keys.length) { mount(slot, h('p', { class: 'empty' }, 'No active keys. ', h('a', { href: '/keys', 'data-link': '' }, 'Create one'), '.')); return; }
  const hasSpend = keys.some((k) => k.spend_this_month !== undefined);
  const hasAlerts = keys.some((k) => k.alert_thresholds !== undefined);
  mount(slot, h('div', { class: 'table-wrap' }, h('table', { class: 'table', id: 'billing-keys-table' },
    h('thead', null, h('tr', null, ['Key', 'Spend cap', hasAlerts ? 'Alerts at' : null, hasSpend ? 'Spent this month' : null].filter(Boolean).map((t) => h('th', { scope: 'col' }, t)))),
    h('tbody', null, keys.map((k) => h('tr', { dataset: { keyId: k.id } },
      h('th', { scope: 'row' }, k.name, ' ', h('span', { class: 'muted mono' }, `${k.prefix}…`)),
      h('td', null, k.monthly_spend_cap ? moneyString(k.monthly_spend_cap) : 'None'),
      hasAlerts ? h('td', { class: 'key-alerts' }, k.monthly_spend_cap ? thresholdsText(k.alert_thresholds) : '—') : null,
      hasSpend ? h('td', { class: 'num key-spend' }, spendText(k.spend_this_month)) : null))))),
  hasSpend ? null : h('p', { class: 'muted small' }, 'Spend per key is not reported by this server; see ', h('a', { href: '/usage', 'data-link': '' }, 'usage'), ' for spend per function.'));
}

// spendText shows a key's spend: a decimal string, or per currency
// {"USD": "1.5", ...}, USD first; amounts in different currencies are never
// added.
export function spendText(spend) {
  if (spend === null || spend === undefined) return '—';
  if (typeof spend === 'object') {
    const order = (c) => (c === 'USD' ? '' : c);
    return Object.entries(spend).sort(([a], [c]) => order(a).localeCompare(order(c))).map(([c, v]) => moneyString(v, c)).join(' + ') || moneyString('0');
  }
  return moneyString(spend);
}

// drawPrices lists each function used this month with what its next call
// costs (GET /api/v1/catalog/{vendor}/{name}/next-call).
async function drawPrices(slot, ctx) {
  let rows;
  try {
    rows = asList(await api('GET', `/api/v1/usage${query({ from: monthStartISO(), to: new Date().toISOString().replace(/\.\d{3}Z$/, 'Z'), granularity: 'day' })}`));
  } catch (e) {
    if (e instanceof Problem && e.status === 404) { mount(slot, h('p', { class: 'notice', dataset: { unavailable: '' } }, 'Usage: not available on this server yet.')); return; }
    throw e;
  }
  const names = [...new Set(rows.map((r) => r.function))].sort();
  if (!ctx.alive()) return;
  if (!names.length) { mount(slot, h('p', { class: 'empty' }, 'You have not called any function this month. ', h('a', { href: '/catalog', 'data-link': '' }, 'Browse the catalog'), '.')); return; }
  const items = await Promise.all(names.map(async (name) => {
    const [vendor, fn] = name.split('/');
    try {
      return { name, vendor, fn, next: await api('GET', `/api/v1/catalog/${enc(vendor)}/${enc(fn)}/next-call`) };
    } catch (e) {
      if (!(e instanceof Problem)) throw e;
      return { name, vendor, fn, problem: e.status === 404 && !e.unavailable ? 'No longer published.' : e.message };
    }
  }));
  if (!ctx.alive()) return;
  mount(slot, h('ul', { class: 'price-list', id: 'billing-price-list' }, items.map((it) => h('li', { dataset: { function: it.name } },
    h('a', { href: `/functions/${enc(it.vendor)}/${enc(it.fn)}`, 'data-link': '', class: 'strong' }, it.name),
    it.next ? [
      h('p', { class: 'formula' }, `Next call (v${it.next.version}, after your ${fmtInt(it.next.position)} this month): ${it.next.formula}`),
      h('p', { class: 'muted small' }, `At most ${moneyString(it.next.worst_case, it.next.currency)} if it runs to its ${fmtInt(it.next.timeout_ms)} ms timeout.`),
    ] : h('p', { class: 'notice notice-bad' }, it.problem)))));
}

// nextCallLine is the function page's "Your next call" paragraph for a
// signed-in consumer; a server without the route shows nothing, any other
// problem is shown. Its refresh() reads the price again (after a call made
// from the page moved the consumer's position).
export function nextCallLine(vendor, name) {
  const p = h('p', { class: 'next-call', id: 'fn-next-call', 'aria-live': 'polite' }, 'Your next call: …');
  let seq = 0;
  p.refresh = () => {
    const mine = ++seq;
    return api('GET', `/api/v1/catalog/${enc(vendor)}/${enc(name)}/next-call`).then((n) => {
      if (mine !== seq) return;
      mount(p, h('strong', null, 'Your next call: '), n.formula, '. ',
        h('span', { class: 'muted small', id: 'fn-next-call-worst' }, `At most ${moneyString(n.worst_case, n.currency)} if it runs to the ${fmtInt(n.timeout_ms)} ms timeout.`));
    }, (e) => {
      if (mine !== seq) return;
      if (e instanceof Problem && e.unavailable) { p.remove(); return; }
      mount(p, h('span', { class: 'notice notice-bad' }, `Your next call’s price could not be read: ${e.message}`));
    });
  };
  p.refresh();
  return p;
}
