// Money display: decimal strings from the API are parsed into exact values
// {n: BigInt, s: scale}, meaning n / 10^s, and formatted; no float ever
// touches an amount. Nothing here prices calls: the pricing rule (free calls,
// tiers, compute, half-even cents) lives on the server only, and the portal
// asks POST /api/v1/pricing/quote for figures. add and sum only total
// amounts the API already computed (a page's usage rows per currency).

const DEC = /^\s*(\d+)(?:\.(\d+))?\s*$/;

// parseDec parses a non-negative decimal string; it returns null when s is
// not one.
export function parseDec(s) {
  const m = DEC.exec(String(s ?? ''));
  if (!m) return null;
  const frac = m[2] || '';
  return { n: BigInt(m[1] + frac), s: frac.length };
}

// dec parses a decimal string or throws.
export function dec(s) {
  const d = parseDec(s);
  if (!d) throw new Error(`not a decimal: ${s}`);
  return d;
}

function rescale(a, s) {
  return a.s === s ? a.n : a.n * 10n ** BigInt(s - a.s);
}

// add returns a + b.
export function add(a, b) {
  const s = Math.max(a.s, b.s);
  return { n: rescale(a, s) + rescale(b, s), s };
}

// isZero reports whether a is zero.
export function isZero(a) {
  return a.n === 0n;
}

// toString writes a with at least minScale decimals and no needless
// trailing zeros beyond them.
export function toString(a, minScale = 0) {
  let { n, s } = a;
  while (s > minScale && n % 10n === 0n) { n /= 10n; s -= 1; }
  if (s < minScale) { n *= 10n ** BigInt(minScale - s); s = minScale; }
  const neg = n < 0n;
  let digits = (neg ? -n : n).toString();
  if (s > 0) {
    digits = digits.padStart(s + 1, '0');
    digits = `${digits.slice(0, -s)}.${digits.slice(-s)}`;
  }
  return (neg ? '-' : '') + groupThousands(digits);
}

function groupThousands(digits) {
  const [i, f] = digits.split('.');
  const g = i.replace(/\B(?=(\d{3})+(?!\d))/g, ',');
  return f === undefined ? g : `${g}.${f}`;
}

// money writes an amount with a currency: "$1.99", "€0.0001", "1.50 CHF".
export function money(a, currency = 'USD', minScale = 2) {
  const t = toString(a, minScale);
  const sym = { USD: '$', EUR: '€', GBP: '£' }[currency];
  return sym ? `${sym}${t}` : `${t} ${currency}`;
}

// moneyString formats a decimal string from the API; anything unparsable is
// shown as it came.
export function moneyString(str, currency = 'USD', minScale = 2) {
  const d = parseDec(str);
  return d ? money(d, currency, minScale) : String(str ?? '—');
}

// sum adds decimal strings exactly.
export function sum(strings) {
  let t = { n: 0n, s: 0 };
  for (const x of strings) {
    const d = parseDec(x);
    if (d) t = add(t, d);
  }
  return t;
}
