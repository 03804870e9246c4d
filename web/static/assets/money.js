// Exact decimal money: a value is {n: BigInt, s: scale}, meaning n / 10^s.
// No float ever touches an amount. The pricing rule matches the server's
// (catalog.Pricing): free calls waive the per-call price only; graduated
// tiers, when present, replace the flat per-call price; compute-ms is always
// charged. Rounding to cents is half-even, once, as billing rounds a line.

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

// fromInt turns a whole number (BigInt, number or digit string) into a decimal.
export function fromInt(i) {
  return { n: BigInt(i), s: 0 };
}

function rescale(a, s) {
  return a.s === s ? a.n : a.n * 10n ** BigInt(s - a.s);
}

// add returns a + b.
export function add(a, b) {
  const s = Math.max(a.s, b.s);
  return { n: rescale(a, s) + rescale(b, s), s };
}

// mul returns a * b.
export function mul(a, b) {
  return { n: a.n * b.n, s: a.s + b.s };
}

// cmp compares a and b: -1, 0 or 1.
export function cmp(a, b) {
  const s = Math.max(a.s, b.s);
  const x = rescale(a, s);
  const y = rescale(b, s);
  return x < y ? -1 : x > y ? 1 : 0;
}

// isZero reports whether a is zero.
export function isZero(a) {
  return a.n === 0n;
}

// roundHalfEven rounds a to scale places, ties to even.
export function roundHalfEven(a, scale = 2) {
  if (a.s <= scale) return { n: rescale(a, scale), s: scale };
  const div = 10n ** BigInt(a.s - scale);
  const neg = a.n < 0n;
  const abs = neg ? -a.n : a.n;
  let q = abs / div;
  const r = abs % div;
  const twice = r * 2n;
  if (twice > div || (twice === div && q % 2n === 1n)) q += 1n;
  return { n: neg ? -q : q, s: scale };
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

// callsCost is the price of billable calls number from+1 .. from+n of a month
// (free calls already taken out), through graduated tiers when the pricing has
// them; the same rule as catalog.Pricing.CallsCost.
export function callsCost(pricing, from, n) {
  from = BigInt(from);
  n = BigInt(n);
  if (n <= 0n) return { n: 0n, s: 0 };
  const tiers = pricing.tiers || [];
  if (!tiers.length) return mul(dec(pricing.per_call || '0'), fromInt(n));
  let total = { n: 0n, s: 0 };
  let lo = 0n;
  const end = from + n;
  for (const t of tiers) {
    let hi = BigInt(t.up_to || 0);
    if (hi === 0n) hi = end;
    const a = lo > from ? lo : from;
    const b = hi < end ? hi : end;
    if (b > a) total = add(total, mul(dec(t.per_call || '0'), fromInt(b - a)));
    lo = hi;
    if (lo >= end) break;
  }
  return total;
}

// monthCost prices `calls` calls by one consumer in one month, each taking
// avgComputeMs (a decimal string) on average. It returns the per-call part,
// the compute part, the exact total and the total rounded to cents.
export function monthCost(pricing, calls, avgComputeMs) {
  const c = BigInt(calls);
  const free = BigInt(pricing.free_calls_per_month || 0);
  const billable = c > free ? c - free : 0n;
  const freeUsed = c - billable;
  const perCall = callsCost(pricing, 0n, billable);
  const compute = mul(mul(dec(pricing.per_compute_ms || '0'), fromInt(c)), dec(avgComputeMs || '0'));
  const total = add(perCall, compute);
  return { calls: c, freeCalls: freeUsed, billable, perCall, compute, total, rounded: roundHalfEven(total, 2) };
}
