// Spend alerts: the alert thresholds of a key or of the account's cap
// (percent of the cap at which a usage.threshold_reached webhook is sent).
// The server checks them; this module only turns the form's text into the
// request's list and a list back into text.

import { Problem } from './api.js';

// parseThresholds turns "50, 80 100" into [50, 80, 100]. Whole numbers go
// as numbers; anything else goes as it was typed, so the server names it in
// its field error. An empty text is undefined: the field is left out.
export function parseThresholds(text) {
  const parts = String(text || '').split(/[\s,;]+/).filter(Boolean);
  if (!parts.length) return undefined;
  return parts.map((p) => {
    const t = p.replace(/%$/, '');
    return /^-?\d+$/.test(t) ? Number(t) : p;
  });
}

// thresholdsInput shows a list in the form's format ("80, 100").
export function thresholdsInput(list) {
  return Array.isArray(list) ? list.join(', ') : '';
}

// thresholdsText shows a list for reading ("80% and 100%", "None").
export function thresholdsText(list) {
  if (!Array.isArray(list)) return '—';
  if (!list.length) return 'None';
  const ps = list.map((n) => `${n}%`);
  return ps.length === 1 ? ps[0] : `${ps.slice(0, -1).join(', ')} and ${ps[ps.length - 1]}`;
}

// explainUnknownThresholds rewrites a server's "unknown field" refusal of
// alert_thresholds (a server without spend alerts) into a plain sentence on
// the field, and returns the problem.
export function explainUnknownThresholds(e) {
  if (e instanceof Problem && /not a known field/i.test(e.fields.alert_thresholds || '')) {
    e.fields.alert_thresholds = 'alert thresholds are not available on this server yet; leave the field empty';
  }
  return e;
}
