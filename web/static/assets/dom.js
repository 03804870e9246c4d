// DOM helpers. Every piece of text reaches the page through text nodes or
// attribute setters, never through HTML parsing, so user text cannot become
// markup. There is deliberately no helper that takes HTML.

const SVG_NS = 'http://www.w3.org/2000/svg';

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else if (c instanceof Node) el.appendChild(c);
    else el.appendChild(document.createTextNode(String(c)));
  }
}

function setAttrs(el, attrs) {
  if (!attrs) return;
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'on') {
      for (const [ev, fn] of Object.entries(v)) el.addEventListener(ev, fn);
    } else if (k === 'class') {
      el.setAttribute('class', Array.isArray(v) ? v.filter(Boolean).join(' ') : v);
    } else if (k === 'dataset') {
      Object.assign(el.dataset, v);
    } else if (k === 'value' && 'value' in el) {
      el.value = v;
    } else if (k === 'checked' || k === 'disabled' || k === 'selected' || k === 'required' || k === 'readOnly') {
      el[k] = Boolean(v);
    } else if (k === 'style') {
      throw new Error('inline style attributes are not allowed; use a class');
    } else if (/^on/i.test(k)) {
      throw new Error('inline event handler attributes are not allowed; use on: {}');
    } else {
      el.setAttribute(k, v === true ? '' : String(v));
    }
  }
}

// h builds an HTML element: h('a', {href: '/x', class: 'btn'}, 'text', child).
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

// s builds an SVG element.
export function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

// clear removes every child of el.
export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

// mount replaces el's children.
export function mount(el, ...children) {
  clear(el);
  append(el, children);
  return el;
}

let idSeq = 0;
// uid returns a page-unique id for label/for and aria-describedby pairs.
export function uid(prefix) {
  idSeq += 1;
  return `${prefix || 'f'}-${idSeq}`;
}

// field builds a labelled input with a slot for its error message. name is
// the API's field name (for example "backend.url"); errors for it are shown
// in the slot by showErrors.
export function field({ label, name, type = 'text', value = '', hint, required, attrs = {}, control }) {
  const id = attrs.id || (control && control.id) || uid('in');
  const hintId = hint ? id + '-hint' : null;
  const errId = id + '-err';
  const input = control || (type === 'textarea' ? h('textarea', { rows: 6 }) : h('input', { type }));
  setAttrs(input, { id, name, required, 'aria-describedby': [hintId, errId].filter(Boolean).join(' '), ...attrs });
  if (value !== undefined && value !== null && 'value' in input && input.tagName !== 'SELECT') input.value = value;
  const err = h('p', { class: 'field-error', id: errId, dataset: { errorFor: name } });
  return h('div', { class: 'field', dataset: { field: name } },
    h('label', { for: id }, label, required ? h('span', { class: 'req', 'aria-hidden': 'true' }, ' *') : null),
    input,
    hint ? h('p', { class: 'hint', id: hintId }, hint) : null,
    err);
}

// clearErrors removes every field and form error inside form.
export function clearErrors(form) {
  for (const el of form.querySelectorAll('.field-error')) el.textContent = '';
  for (const el of form.querySelectorAll('[aria-invalid]')) el.removeAttribute('aria-invalid');
  const fe = form.querySelector('.form-error');
  if (fe) { fe.textContent = ''; fe.hidden = true; }
}

// showErrors puts a problem's field errors next to their fields; what has no
// field, and the problem's detail, go to the form's error box.
export function showErrors(form, problem) {
  clearErrors(form);
  const rest = [];
  const fields = (problem && problem.fields) || {};
  let first = null;
  for (const [name, msg] of Object.entries(fields)) {
    const slot = findErrorSlot(form, name);
    if (!slot) { rest.push(`${name} ${msg}`); continue; }
    slot.textContent = slot.textContent ? `${slot.textContent}; ${msg}` : capitalise(msg);
    const wrap = slot.closest('.field');
    const input = wrap && wrap.querySelector('input, textarea, select');
    if (input) {
      input.setAttribute('aria-invalid', 'true');
      if (!first) first = input;
    }
  }
  const box = form.querySelector('.form-error');
  const detail = problem ? problem.message : 'Something went wrong.';
  if (box) {
    const parts = [];
    if (!Object.keys(fields).length || rest.length) parts.push(detail);
    if (rest.length) parts.push(rest.join('; '));
    box.textContent = parts.join(' ');
    box.hidden = parts.length === 0;
    if (!first && parts.length) box.focus();
  }
  if (first) first.focus();
}

function findErrorSlot(form, name) {
  for (const el of form.querySelectorAll('[data-error-for]')) {
    if (el.dataset.errorFor === name) return el;
  }
  // "pricing.tiers[1].per_call" falls back to "pricing.tiers", then "pricing".
  const cut = name.replace(/(\[\d+\])?\.[^.[\]]+$|\[\d+\]$/, '');
  return cut && cut !== name ? findErrorSlot(form, cut) : null;
}

function capitalise(msg) {
  return msg ? msg.charAt(0).toUpperCase() + msg.slice(1) : msg;
}

// formError is the box a form's general errors go to.
export function formError() {
  return h('div', { class: 'form-error', role: 'alert', tabindex: '-1', hidden: true });
}

// button builds a real <button>.
export function button(label, onClick, attrs = {}) {
  return h('button', { type: 'button', class: 'btn', ...attrs, on: { click: onClick } }, label);
}

// busy disables a button while an action runs.
export async function busy(btn, fn) {
  const was = btn.disabled;
  btn.disabled = true;
  btn.setAttribute('aria-busy', 'true');
  try {
    return await fn();
  } finally {
    btn.disabled = was;
    btn.removeAttribute('aria-busy');
  }
}

// toast shows a short status message.
export function toast(msg) {
  const el = document.getElementById('toast');
  if (!el) return;
  el.textContent = msg;
  el.classList.add('show');
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => el.classList.remove('show'), 2600);
}

// copyButton copies getText() to the clipboard, falling back to selecting
// the text of target for a manual copy.
export function copyButton(getText, target, label = 'Copy') {
  const btn = button(label, async () => {
    const text = getText();
    try {
      await navigator.clipboard.writeText(text);
      btn.textContent = 'Copied';
      toast('Copied to the clipboard');
    } catch {
      if (target && target.select) { target.focus(); target.select(); }
      btn.textContent = 'Press Ctrl+C';
    }
    setTimeout(() => { btn.textContent = label; }, 2000);
  }, { class: 'btn btn-small' });
  return btn;
}

// fmtTime shows an RFC 3339 time in the reader's locale, or a dash.
export function fmtTime(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '—';
  return d.toLocaleString(undefined, { year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' });
}

// fmtMonth shows the month of an RFC 3339 time, in UTC (billing months are UTC).
export function fmtMonth(iso) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '—';
  return d.toLocaleDateString(undefined, { year: 'numeric', month: 'long', timeZone: 'UTC' });
}

// fmtInt groups thousands.
export function fmtInt(n) {
  return Number(n || 0).toLocaleString('en-US');
}
