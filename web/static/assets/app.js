// The portal's shell: a tiny history router, the header navigation and the
// sign-up / log-in pages. Pages live in consumer.js, billing.js, webhooks.js
// and vendor.js.

import { api, Problem } from './api.js';
import { h, mount, field, formError, showErrors, clearErrors, busy, toast } from './dom.js';
import { state, loadMe } from './state.js';
import { catalogPage, functionPage, usagePage, invoicesPage, invoicePage } from './consumer.js';
import { keysPage } from './keys.js';
import { billingPage } from './billing.js';
import { webhooksPage, auditPage } from './webhooks.js';
import { vendorPage, newFunctionPage, vendorFunctionPage, statementsPage } from './vendor.js';

const routes = [
  { re: /^\/(?:catalog)?$/, page: catalogPage, nav: 'catalog' },
  { re: /^\/functions\/([^/]+)\/([^/]+)$/, page: functionPage, nav: 'catalog' },
  { re: /^\/login$/, page: loginPage, nav: 'login' },
  { re: /^\/signup$/, page: signupPage, nav: 'signup' },
  { re: /^\/keys$/, page: keysPage, auth: true, nav: 'keys' },
  { re: /^\/usage$/, page: usagePage, auth: true, nav: 'usage' },
  { re: /^\/billing$/, page: billingPage, auth: true, nav: 'billing' },
  { re: /^\/webhook-endpoints$/, page: webhooksPage, auth: true, nav: 'webhooks' },
  { re: /^\/audit$/, page: auditPage, auth: true, nav: 'audit' },
  { re: /^\/invoices$/, page: invoicesPage, auth: true, nav: 'invoices' },
  { re: /^\/invoices\/([^/]+)$/, page: invoicePage, auth: true, nav: 'invoices' },
  { re: /^\/vendor$/, page: vendorPage, auth: true, nav: 'vendor' },
  { re: /^\/vendor\/new$/, page: newFunctionPage, auth: true, vendor: true, nav: 'vendor' },
  { re: /^\/vendor\/functions\/([^/]+)$/, page: vendorFunctionPage, auth: true, vendor: true, nav: 'vendor' },
  { re: /^\/statements$/, page: statementsPage, auth: true, vendor: true, nav: 'statements' },
];

let renderSeq = 0;
let firstRender = true;

// navigate shows path without reloading the page (the tab's in-memory keys
// survive).
export function navigate(path, { replace = false } = {}) {
  if (replace) history.replaceState(null, '', path);
  else history.pushState(null, '', path);
  render();
}

function localPath(p) {
  return typeof p === 'string' && p.startsWith('/') && !p.startsWith('//') && !p.startsWith('/\\');
}

async function render() {
  const seq = ++renderSeq;
  const main = document.getElementById('main');
  const path = location.pathname.replace(/\/+$/, '') || '/';
  let route = null;
  let params = [];
  for (const r of routes) {
    const m = r.re.exec(path);
    if (m) { route = r; params = m.slice(1).map(decodeURIComponent); break; }
  }
  if (route && route.auth && !state.me) {
    navigate(`/login?next=${encodeURIComponent(location.pathname + location.search)}`, { replace: true });
    return;
  }
  if (route && route.vendor && !state.me.vendor) {
    navigate('/vendor', { replace: true });
    return;
  }
  drawNav(route ? route.nav : '');
  const ctx = {
    query: new URLSearchParams(location.search),
    alive: () => seq === renderSeq,
    navigate,
    refreshNav: () => drawNav(route ? route.nav : ''),
  };
  mount(main, h('p', { class: 'loading' }, 'Loading…'));
  try {
    if (!route) notFound(main);
    else await route.page(main, params, ctx);
  } catch (e) {
    if (!ctx.alive()) return;
    if (e instanceof Problem && e.status === 401) {
      state.me = null;
      navigate(`/login?next=${encodeURIComponent(location.pathname)}`, { replace: true });
      return;
    }
    mount(main, h('div', { class: 'panel' }, h('h1', null, e instanceof Problem && e.status === 404 ? 'Not found' : 'Something went wrong'),
      h('p', { class: 'muted' }, e.message || String(e)), h('p', null, h('a', { href: '/', 'data-link': '' }, 'Back to the catalog'))));
  }
  if (!ctx.alive()) return;
  const h1 = main.querySelector('h1');
  document.title = h1 ? `${h1.textContent} · fnmarket` : 'fnmarket';
  if (!firstRender && h1) {
    h1.setAttribute('tabindex', '-1');
    h1.focus({ preventScroll: true });
    window.scrollTo(0, 0);
  }
  firstRender = false;
}

function notFound(main) {
  mount(main, h('div', { class: 'panel' }, h('h1', null, 'Page not found'),
    h('p', { class: 'muted' }, 'There is nothing at this address.'),
    h('p', null, h('a', { href: '/', 'data-link': '' }, 'Browse the catalog'))));
}

function drawNav(current) {
  const nav = document.getElementById('nav');
  const link = (href, label, key) => h('a', { href, 'data-link': '', 'aria-current': key === current ? 'page' : null }, label);
  const me = state.me;
  const left = [link('/catalog', 'Catalog', 'catalog')];
  let right;
  if (me) {
    left.push(link('/keys', 'API keys', 'keys'), link('/usage', 'Usage', 'usage'), link('/invoices', 'Invoices', 'invoices'), link('/billing', 'Billing', 'billing'),
      link('/webhook-endpoints', 'Webhooks', 'webhooks'), link('/audit', 'Audit log', 'audit'));
    left.push(link('/vendor', me.vendor ? 'My functions' : 'Sell a function', 'vendor'));
    if (me.vendor) left.push(link('/statements', 'Statements', 'statements'));
    const out = h('button', { type: 'button', class: 'btn btn-ghost', id: 'logout', on: { click: () => busy(out, logout) } }, 'Log out');
    right = [h('span', { class: 'who', title: me.email }, me.name || me.email), out];
  } else {
    right = [link('/login', 'Log in', 'login'), h('a', { href: '/signup', 'data-link': '', class: 'btn btn-primary btn-small' }, 'Sign up')];
  }
  mount(nav, h('div', { class: 'nav-links' }, left), h('div', { class: 'nav-user' }, right));
}

async function logout() {
  try {
    await api('POST', '/api/v1/auth/logout');
  } catch (e) {
    toast(e.message);
  }
  state.me = null;
  state.sessionKeys = [];
  navigate('/');
  toast('Logged out');
}

function authForm({ title, lead, fields, submitLabel, onSubmit, footer, id }) {
  const err = formError();
  const submit = h('button', { type: 'submit', class: 'btn btn-primary btn-block' }, submitLabel);
  const form = h('form', { class: 'form', id, novalidate: true }, err, fields, submit);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    clearErrors(form);
    await busy(submit, async () => {
      try {
        await onSubmit(new FormData(form));
      } catch (e) {
        if (!(e instanceof Problem)) throw e;
        showErrors(form, e);
      }
    });
  });
  return h('section', { class: 'auth-card panel' }, h('h1', null, title), lead ? h('p', { class: 'muted' }, lead) : null, form, footer);
}

function afterAuth(ctx, account) {
  state.me = account;
  const next = ctx.query.get('next');
  navigate(localPath(next) && !next.startsWith('/login') && !next.startsWith('/signup') ? next : '/');
  toast(`Signed in as ${account.email}`);
}

async function loginPage(main, _params, ctx) {
  mount(main, authForm({
    id: 'login-form',
    title: 'Log in',
    lead: 'Welcome back. Call functions, watch your usage, or manage what you sell.',
    fields: [
      field({ label: 'Email', name: 'email', type: 'email', required: true, attrs: { autocomplete: 'username' } }),
      field({ label: 'Password', name: 'password', type: 'password', required: true, attrs: { autocomplete: 'current-password' } }),
    ],
    submitLabel: 'Log in',
    onSubmit: async (fd) => {
      const res = await api('POST', '/api/v1/auth/login', { email: fd.get('email'), password: fd.get('password') });
      afterAuth(ctx, res.account);
    },
    footer: h('p', { class: 'muted center' }, 'New here? ', h('a', { href: `/signup${location.search}`, 'data-link': '' }, 'Create an account')),
  }));
}

async function signupPage(main, _params, ctx) {
  mount(main, authForm({
    id: 'signup-form',
    title: 'Create your account',
    lead: 'Every account can call functions. Sell your own once you are in.',
    fields: [
      field({ label: 'Name', name: 'name', required: true, attrs: { autocomplete: 'name' } }),
      field({ label: 'Email', name: 'email', type: 'email', required: true, attrs: { autocomplete: 'email' } }),
      field({ label: 'Password', name: 'password', type: 'password', required: true, hint: 'At least 10 characters.', attrs: { autocomplete: 'new-password' } }),
    ],
    submitLabel: 'Create account',
    onSubmit: async (fd) => {
      const res = await api('POST', '/api/v1/auth/signup', { name: fd.get('name'), email: fd.get('email'), password: fd.get('password') });
      afterAuth(ctx, res.account);
    },
    footer: h('p', { class: 'muted center' }, 'Already have an account? ', h('a', { href: `/login${location.search}`, 'data-link': '' }, 'Log in')),
  }));
}

function onClick(ev) {
  if (ev.defaultPrevented || ev.button !== 0 || ev.metaKey || ev.ctrlKey || ev.shiftKey || ev.altKey) return;
  const a = ev.target.closest('a[href]');
  if (!a || a.target || a.hasAttribute('download')) return;
  const url = new URL(a.href, location.href);
  if (url.origin !== location.origin || /^\/(api|v1|webhooks|assets)\//.test(url.pathname)) return;
  ev.preventDefault();
  navigate(url.pathname + url.search + url.hash);
}

async function start() {
  document.addEventListener('click', onClick);
  window.addEventListener('popstate', render);
  try {
    await loadMe();
  } catch (e) {
    toast(e.message);
  }
  await render();
  document.documentElement.dataset.ready = 'true';
}

start();
