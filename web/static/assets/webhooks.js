// Account pages: outbound webhook endpoints with their delivery logs, and
// the audit log. Both serve any signed-in account, vendor or not.

import { api, asList, query, Problem } from './api.js';
import { h, mount, field, formError, showErrors, clearErrors, busy, toast, copyButton, fmtTime, button } from './dom.js';
import { state } from './state.js';
import { notAvailable } from './consumer.js';

const enc = encodeURIComponent;

// eventGroups are the event types an endpoint can subscribe to, as the
// contract lists them ("Webhooks (outbound)"); vendor events are offered to
// vendors only. webhook.test is sent by the test button whatever an
// endpoint subscribes to.
const eventGroups = [
  { title: 'Spend and billing', vendor: false, types: [
    ['usage.threshold_reached', 'a key or the account reached an alert threshold of its spend cap'],
    ['invoice.issued', 'an invoice was issued'],
    ['invoice.paid', 'an invoice was paid'],
    ['invoice.voided', 'an invoice was voided'],
    ['payment.failed', 'a payment failed'],
    ['credits.added', 'prepaid credit was added'],
  ] },
  { title: 'API keys', vendor: false, types: [
    ['key.expiring', 'a key expires in three days'],
    ['key.revoked', 'a key was revoked'],
  ] },
  { title: 'Selling functions', vendor: true, types: [
    ['statement.issued', 'a monthly statement was issued'],
    ['payout.sent', 'a payout was sent'],
    ['function.error_rate_high', 'a function’s error rate went over your threshold'],
  ] },
];

const deliveryBadge = { delivered: 'badge-good', pending: 'badge-warn', failed: 'badge-bad' };

// ---- Webhooks -------------------------------------------------------------

export async function webhooksPage(main, _p, ctx) {
  let endpoints;
  try {
    endpoints = asList(await api('GET', '/api/v1/webhooks'));
  } catch (e) {
    if (!(e instanceof Problem && e.unavailable)) throw e;
    if (!ctx.alive()) return;
    mount(main, pageHead(), notAvailable('Webhooks'));
    return;
  }
  if (!ctx.alive()) return;
  const list = h('div', { id: 'webhooks-list' });
  const fresh = h('div', { id: 'new-webhook-slot' });
  mount(main, pageHead(), fresh,
    h('section', { class: 'panel' }, h('h2', null, 'Add an endpoint'), createForm(fresh, list, ctx)),
    h('section', { class: 'panel' }, h('h2', null, 'Your endpoints'), list));
  await drawEndpoints(list, ctx, endpoints);
}

function pageHead() {
  return h('header', { class: 'page-head' }, h('h1', null, 'Webhooks'),
    h('p', { class: 'muted' }, 'fnmarket sends events to your endpoints as signed POST requests (Standard Webhooks: ',
      h('code', null, 'webhook-id'), ', ', h('code', null, 'webhook-timestamp'), ', ', h('code', null, 'webhook-signature'),
      '). Failed deliveries are retried with backoff for more than a day, with the same ', h('code', null, 'webhook-id'),
      '; an endpoint that keeps failing for days is disabled, and says why here.'));
}

function createForm(fresh, list, ctx) {
  const err = formError();
  const submit = h('button', { type: 'submit', class: 'btn btn-primary', id: 'create-webhook' }, 'Add endpoint');
  const all = h('input', { type: 'checkbox', name: 'events', value: '*', id: 'event-all' });
  const boxes = [];
  const groups = eventGroups.filter((g) => !g.vendor || (state.me && state.me.vendor)).map((g) => h('div', { class: 'event-group' },
    h('p', { class: 'event-group-title' }, g.title),
    g.types.map(([type, what]) => {
      const box = h('input', { type: 'checkbox', name: 'events', value: type, id: `event-${type.replace(/[._]/g, '-')}` });
      boxes.push(box);
      return h('label', { class: 'check' }, box, h('span', null, h('code', null, type), h('span', { class: 'muted small' }, ` ${what}`)));
    })));
  all.addEventListener('change', () => { for (const b of boxes) b.disabled = all.checked; });
  const events = h('fieldset', { class: 'events-field', 'aria-describedby': 'webhook-events-err' },
    h('legend', null, 'Events', h('span', { class: 'req', 'aria-hidden': 'true' }, ' *')),
    h('label', { class: 'check check-all' }, all, h('span', null, 'All events ', h('code', null, '*'), h('span', { class: 'muted small' }, ', including types added later'))),
    h('div', { class: 'event-groups' }, groups),
    h('p', { class: 'field-error', id: 'webhook-events-err', dataset: { errorFor: 'events' } }));
  const form = h('form', { class: 'form', id: 'webhook-form', novalidate: true }, err,
    field({ label: 'Endpoint URL', name: 'url', type: 'url', required: true, hint: 'An https:// address of yours on the public internet; private and loopback addresses are refused.',
      attrs: { id: 'webhook-url', autocomplete: 'off', placeholder: 'https://example.com/hooks/fnmarket', spellcheck: 'false' } }),
    events, submit);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    clearErrors(form);
    const fd = new FormData(form);
    const body = { url: String(fd.get('url') || '').trim(), events: all.checked ? ['*'] : boxes.filter((b) => b.checked).map((b) => b.value) };
    await busy(submit, async () => {
      try {
        const created = await api('POST', '/api/v1/webhooks', body);
        form.reset();
        for (const b of boxes) b.disabled = false;
        showSecret(fresh, created);
        await drawEndpoints(list, ctx);
      } catch (e) {
        if (!(e instanceof Problem)) throw e;
        showErrors(form, e);
      }
    });
  });
  return form;
}

// showSecret shows a new endpoint's signing secret, once: the API never
// answers it again.
function showSecret(slot, ep) {
  const input = h('input', { type: 'text', readOnly: true, value: ep.secret || '', id: 'new-webhook-secret', class: 'mono key-value', 'aria-label': `The signing secret of ${ep.url}`, spellcheck: 'false' });
  input.addEventListener('focus', () => input.select());
  mount(slot, h('section', { class: 'panel panel-warn', id: 'new-webhook', role: 'region', 'aria-labelledby': 'new-webhook-h' },
    h('h2', { id: 'new-webhook-h' }, 'Signing secret of your new endpoint'),
    h('p', { class: 'mono break' }, ep.url),
    h('p', { class: 'warn' }, h('strong', null, 'Copy it now: you will not see it again.'),
      ' Your receiver needs it to check each request’s webhook-signature. If you lose it, delete the endpoint and add it again.'),
    h('div', { class: 'key-row' }, input, copyButton(() => ep.secret || '', input, 'Copy secret')),
    button('I have copied it', () => slot.replaceChildren(), { class: 'btn btn-small', id: 'secret-done' })));
  input.focus();
}

async function drawEndpoints(list, ctx, given) {
  const endpoints = given || asList(await api('GET', '/api/v1/webhooks'));
  if (!ctx.alive()) return;
  if (!endpoints.length) { mount(list, h('p', { class: 'empty' }, 'No endpoints yet. Add one above to be told when something happens.')); return; }
  const cards = endpoints.map((ep) => endpointCard(ep, list, ctx));
  mount(list, cards);
  await Promise.all(cards.map((c) => c.loadDeliveries()));
}

function endpointCard(ep, list, ctx) {
  const log = h('div', { class: 'delivery-log' });
  const disabled = Boolean(ep.disabled_at);
  const loadDeliveries = () => drawDeliveries(log, ep, ctx);
  const testErr = h('p', { class: 'field-error', role: 'alert' });
  const test = h('button', { type: 'button', class: 'btn btn-small', dataset: { test: ep.id } }, 'Send test event');
  test.addEventListener('click', () => busy(test, async () => {
    testErr.textContent = '';
    try {
      await api('POST', `/api/v1/webhooks/${enc(ep.id)}/test`);
    } catch (e) {
      if (!(e instanceof Problem)) throw e;
      testErr.textContent = e.unavailable ? 'Test events are not available on this server yet.' : e.message;
      return;
    }
    toast('Test event sent');
    await loadDeliveries();
  }));
  const refresh = h('button', { type: 'button', class: 'btn btn-small btn-ghost', dataset: { refresh: ep.id } }, 'Refresh');
  refresh.addEventListener('click', () => busy(refresh, loadDeliveries));
  const card = h('article', { class: ['endpoint', disabled ? 'endpoint-disabled' : null], dataset: { webhookId: ep.id } },
    h('div', { class: 'panel-row' },
      h('h3', { class: 'mono break endpoint-url' }, ep.url),
      h('span', { class: ['badge', disabled ? 'badge-bad' : 'badge-good'], dataset: { state: disabled ? 'disabled' : 'active' } }, disabled ? 'Disabled' : 'Active')),
    disabled ? h('p', { class: 'notice notice-bad disabled-reason', role: 'note' },
      h('strong', null, `Disabled ${fmtTime(ep.disabled_at)}: `), ep.disabled_reason || 'no reason was given.',
      ' Nothing is sent to it any more. Once it answers, enable it again: new events go to it, and its failed deliveries can be retried.') : null,
    h('p', { class: 'endpoint-events' }, h('span', { class: 'muted small' }, 'Events: '),
      (ep.events || []).map((t) => h('code', { class: 'event-chip' }, t === '*' ? '* (all)' : t))),
    h('p', { class: 'muted small' }, `Added ${fmtTime(ep.created_at)}`),
    h('div', { class: 'actions-row' }, disabled ? enableButton(ep, list, ctx, testErr) : test,
      h('button', { type: 'button', class: 'btn btn-small btn-danger', dataset: { delete: ep.id }, 'aria-label': `Delete endpoint ${ep.url}`,
        on: { click: () => confirmDelete(ep, list, ctx) } }, 'Delete')),
    testErr,
    h('div', { class: 'panel-head' }, h('h4', null, 'Deliveries'), refresh),
    log);
  card.loadDeliveries = loadDeliveries;
  return card;
}

// enableButton enables a disabled endpoint again (its errors go to errSlot).
function enableButton(ep, list, ctx, errSlot) {
  const btn = h('button', { type: 'button', class: 'btn btn-small btn-primary', dataset: { enable: ep.id }, 'aria-label': `Enable endpoint ${ep.url} again` }, 'Enable again');
  btn.addEventListener('click', () => busy(btn, async () => {
    errSlot.textContent = '';
    try {
      await api('POST', `/api/v1/webhooks/${enc(ep.id)}/enable`);
    } catch (e) {
      if (!(e instanceof Problem)) throw e;
      errSlot.textContent = e.unavailable ? 'Enabling endpoints again is not available on this server yet.' : e.message;
      return;
    }
    toast('Endpoint enabled');
    await drawEndpoints(list, ctx);
  }));
  return btn;
}

async function drawDeliveries(slot, ep, ctx) {
  let items;
  try {
    items = asList(await api('GET', `/api/v1/webhooks/${enc(ep.id)}/deliveries`));
  } catch (e) {
    if (!(e instanceof Problem)) throw e;
    if (!ctx.alive()) return;
    mount(slot, e.unavailable ? notAvailable('Delivery log') : h('p', { class: 'notice notice-bad' }, `The delivery log could not be read: ${e.message}`));
    return;
  }
  if (!ctx.alive()) return;
  if (!items.length) { mount(slot, h('p', { class: 'empty' }, 'Nothing sent yet. Send a test event to try your receiver.')); return; }
  mount(slot, h('div', { class: 'table-wrap' }, h('table', { class: 'table deliveries-table' },
    h('thead', null, h('tr', null, ['Event', 'Status', 'Attempts', 'Last answer', 'Next attempt', 'Created', ''].map((t) => h('th', { scope: 'col' }, t)))),
    h('tbody', null, items.map((d) => h('tr', { dataset: { deliveryId: d.id, status: d.status } },
      h('th', { scope: 'row' }, h('code', null, d.type), h('div', { class: 'muted small mono' }, d.event_id)),
      h('td', { class: 'delivery-status' }, h('span', { class: ['badge', deliveryBadge[d.status] || 'badge-muted'] }, d.status)),
      h('td', { class: 'num delivery-attempts' }, String(d.attempts ?? 0)),
      h('td', { class: 'delivery-code' }, d.last_status_code ? `HTTP ${d.last_status_code}` : '—'),
      h('td', { class: 'delivery-next' }, d.status === 'delivered' ? '—' : fmtTime(d.next_attempt_at)),
      h('td', null, fmtTime(d.created_at)),
      h('td', null, d.status === 'failed' || d.status === 'pending' ? retryButton(slot, ep, d, ctx) : null)))))));
}

function retryButton(slot, ep, d, ctx) {
  const btn = h('button', { type: 'button', class: 'btn btn-small', dataset: { retry: d.id }, 'aria-label': `Retry delivery ${d.id}` }, 'Retry');
  btn.addEventListener('click', () => busy(btn, async () => {
    try {
      await api('POST', `/api/v1/webhooks/${enc(ep.id)}/deliveries/${enc(d.id)}/retry`);
    } catch (e) {
      if (!(e instanceof Problem)) throw e;
      toast(e.unavailable ? 'Retrying is not available on this server yet.' : e.message);
      return;
    }
    toast('Delivery queued again');
    await drawDeliveries(slot, ep, ctx);
  }));
  return btn;
}

function confirmDelete(ep, list, ctx) {
  const err = h('p', { class: 'field-error', role: 'alert' });
  const yes = h('button', { type: 'button', class: 'btn btn-danger', id: 'confirm-delete-webhook' }, 'Delete endpoint');
  const no = h('button', { type: 'button', class: 'btn', value: 'cancel' }, 'Cancel');
  const dlg = h('dialog', { class: 'dialog', 'aria-labelledby': 'delete-webhook-h' },
    h('h2', { id: 'delete-webhook-h' }, 'Delete this endpoint?'),
    h('p', { class: 'mono break' }, ep.url),
    h('p', null, 'Nothing more is sent to it, retries included, and its delivery log goes with it. This cannot be undone.'),
    err, h('div', { class: 'actions' }, no, yes));
  no.addEventListener('click', () => dlg.close());
  dlg.addEventListener('close', () => dlg.remove());
  yes.addEventListener('click', () => busy(yes, async () => {
    try {
      await api('DELETE', `/api/v1/webhooks/${enc(ep.id)}`);
    } catch (e) {
      err.textContent = e.message;
      return;
    }
    dlg.close();
    toast('Endpoint deleted');
    await drawEndpoints(list, ctx);
  }));
  document.body.appendChild(dlg);
  dlg.showModal();
  no.focus();
}

// ---- Audit log ------------------------------------------------------------

export async function auditPage(main, _p, ctx) {
  const head = h('header', { class: 'page-head' }, h('h1', null, 'Audit log'),
    h('p', { class: 'muted' }, 'What was done on your account, newest first: sign-ups and logins (failed ones too), keys, caps and payment, webhooks and functions. Entries are never edited or deleted.'));
  let first;
  try {
    first = await api('GET', '/api/v1/audit');
  } catch (e) {
    if (!(e instanceof Problem && e.unavailable)) throw e;
    if (!ctx.alive()) return;
    mount(main, head, notAvailable('Audit log'));
    return;
  }
  if (!ctx.alive()) return;
  const body = h('tbody');
  const more = h('button', { type: 'button', class: 'btn', id: 'audit-more' }, 'Show older entries');
  const moreErr = h('p', { class: 'field-error', role: 'alert' });
  const count = h('p', { class: 'muted small', id: 'audit-count', 'aria-live': 'polite' });
  let shown = 0;
  let cursor = '';
  const add = (page) => {
    const items = asList(page);
    for (const it of items) {
      body.appendChild(h('tr', null,
        h('td', null, h('time', { datetime: it.at, title: it.at }, fmtTime(it.at))),
        h('td', { class: 'break' }, it.actor || '—'),
        h('td', null, h('code', null, it.action)),
        h('td', { class: 'mono break' }, it.target || '—'),
        h('td', { class: 'mono' }, it.ip || '—')));
    }
    shown += items.length;
    cursor = (page && page.next_cursor) || '';
    more.hidden = !cursor;
    count.textContent = `${shown} ${shown === 1 ? 'entry' : 'entries'} shown${cursor ? '; older ones follow' : ''}.`;
  };
  more.addEventListener('click', () => busy(more, async () => {
    moreErr.textContent = '';
    try {
      add(await api('GET', `/api/v1/audit${query({ cursor })}`));
    } catch (e) {
      if (!(e instanceof Problem)) throw e;
      moreErr.textContent = e.message;
    }
  }));
  const table = h('div', { class: 'table-wrap' }, h('table', { class: 'table', id: 'audit-table' },
    h('thead', null, h('tr', null, ['When', 'Who', 'Action', 'Target', 'Address'].map((t) => h('th', { scope: 'col' }, t)))), body));
  add(first);
  mount(main, head, h('section', { class: 'panel' },
    shown ? [table, count, h('div', { class: 'actions-row' }, more), moreErr] : h('p', { class: 'empty', id: 'audit-empty' }, 'Nothing recorded yet.')));
}
