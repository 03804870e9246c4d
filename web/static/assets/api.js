// The portal talks to the same REST API outside users do. The session is the
// HttpOnly fnm_session cookie; state-changing requests echo the readable
// fnm_csrf cookie in X-CSRF-Token (double submit). No token is ever stored by
// this script.

// Problem is an API error: the problem+json document's detail, code and
// field errors.
export class Problem extends Error {
  constructor(status, doc) {
    const d = doc && typeof doc === 'object' ? doc : {};
    super(d.detail || d.title || `Request failed (${status})`);
    this.status = status;
    this.code = d.code || '';
    this.fields = d.errors || {};
  }

  // unavailable reports whether the route is not served (yet) by this server.
  get unavailable() {
    return this.status === 404 && (this.code === 'not_found' || this.code === '') && /no such route|method not allowed/i.test(this.message);
  }
}

// csrfToken reads the fnm_csrf cookie.
export function csrfToken() {
  for (const part of document.cookie.split(';')) {
    const [k, ...v] = part.trim().split('=');
    if (k === 'fnm_csrf') return decodeURIComponent(v.join('='));
  }
  return '';
}

// api sends one request and returns the decoded JSON answer (null for 204).
// It throws a Problem for every non-2xx answer.
export async function api(method, path, body) {
  const headers = { Accept: 'application/json' };
  const init = { method, headers, credentials: 'same-origin', cache: 'no-store' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  if (method !== 'GET' && method !== 'HEAD') headers['X-CSRF-Token'] = csrfToken();
  let res;
  try {
    res = await fetch(path, init);
  } catch (e) {
    throw new Problem(0, { detail: 'The server could not be reached. Check your connection and try again.' });
  }
  if (res.status === 204) return null;
  const type = res.headers.get('Content-Type') || '';
  let doc = null;
  if (/json/.test(type)) {
    try { doc = await res.json(); } catch { doc = null; }
  }
  if (!res.ok) throw new Problem(res.status, doc);
  return doc;
}

// asList accepts the shapes list answers come in: {items: [...]}, a bare
// array, or a single object.
export function asList(doc) {
  if (Array.isArray(doc)) return doc;
  if (doc && Array.isArray(doc.items)) return doc.items;
  return doc ? [doc] : [];
}

// query builds a query string from the defined values of params.
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') q.set(k, v);
  const s = q.toString();
  return s ? `?${s}` : '';
}
