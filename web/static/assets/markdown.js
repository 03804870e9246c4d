// A deliberately tiny Markdown renderer that builds DOM nodes, never HTML
// strings: paragraphs, headings (#, ##, ###), **bold**, *em* / _em_, `code`,
// fenced code blocks, bullet and numbered lists, and [links](https://...)
// whose target is http(s) only. Anything else, raw HTML included, is shown
// as the text it is.

import { h } from './dom.js';

// render returns a DocumentFragment for the Markdown source.
export function render(src) {
  const frag = document.createDocumentFragment();
  const lines = String(src ?? '').replace(/\r\n?/g, '\n').split('\n');
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    if (/^\s*$/.test(line)) { i += 1; continue; }
    const fence = /^\s*(```|~~~)\s*([\w+-]*)\s*$/.exec(line);
    if (fence) {
      const body = [];
      i += 1;
      while (i < lines.length && !new RegExp(`^\\s*${fence[1]}\\s*$`).test(lines[i])) { body.push(lines[i]); i += 1; }
      i += 1; // the closing fence, or the end
      const code = h('code', null, body.join('\n'));
      if (fence[2]) code.dataset.lang = fence[2];
      frag.appendChild(h('pre', { class: 'md-code' }, code));
      continue;
    }
    const heading = /^(#{1,3})\s+(.*?)\s*#*\s*$/.exec(line);
    if (heading) {
      frag.appendChild(h(`h${heading[1].length + 2}`, { class: 'md-h' }, inline(heading[2])));
      i += 1;
      continue;
    }
    const listKind = itemKind(line);
    if (listKind) {
      const list = h(listKind === 'ol' ? 'ol' : 'ul');
      while (i < lines.length && itemKind(lines[i]) === listKind) {
        let text = lines[i].replace(/^\s*(?:[-*+]|\d{1,9}[.)])\s+/, '');
        i += 1;
        // Indented lines continue the item.
        while (i < lines.length && /^\s{2,}\S/.test(lines[i]) && !itemKind(lines[i])) { text += ` ${lines[i].trim()}`; i += 1; }
        list.appendChild(h('li', null, inline(text)));
      }
      frag.appendChild(list);
      continue;
    }
    const para = [];
    while (i < lines.length && !/^\s*$/.test(lines[i]) && !itemKind(lines[i]) && !/^\s*(```|~~~)/.test(lines[i]) && !/^#{1,3}\s/.test(lines[i])) {
      para.push(lines[i].trim());
      i += 1;
    }
    frag.appendChild(h('p', null, inline(para.join(' '))));
  }
  return frag;
}

function itemKind(line) {
  if (/^\s*[-*+]\s+\S/.test(line)) return 'ul';
  if (/^\s*\d{1,9}[.)]\s+\S/.test(line)) return 'ol';
  return null;
}

// safeHref returns the URL when it is an absolute http(s) URL, else null.
export function safeHref(raw) {
  try {
    const u = new URL(raw);
    return u.protocol === 'http:' || u.protocol === 'https:' ? u.href : null;
  } catch {
    return null;
  }
}

// inline turns one run of text into nodes: code spans first (their content
// is literal), then links, bold and emphasis, which may nest.
export function inline(text) {
  const out = [];
  let buf = '';
  const flush = () => { if (buf) { out.push(document.createTextNode(buf)); buf = ''; } };
  let i = 0;
  while (i < text.length) {
    const ch = text[i];
    if (ch === '\\' && i + 1 < text.length && /[\\`*_[\]()#+\-.!]/.test(text[i + 1])) {
      buf += text[i + 1];
      i += 2;
      continue;
    }
    if (ch === '`') {
      const end = text.indexOf('`', i + 1);
      if (end > i + 1) {
        flush();
        out.push(h('code', null, text.slice(i + 1, end)));
        i = end + 1;
        continue;
      }
    }
    if (ch === '[') {
      const m = /^\[([^\]]+)\]\(\s*([^()\s]+)\s*\)/.exec(text.slice(i));
      if (m) {
        flush();
        const href = safeHref(m[2]);
        if (href) {
          out.push(h('a', { href, rel: 'noopener noreferrer nofollow', target: '_blank' }, inline(m[1])));
        } else {
          // Not an http(s) link: keep the words, drop the target.
          out.push(...inline(m[1]));
        }
        i += m[0].length;
        continue;
      }
    }
    if (text.startsWith('**', i) || text.startsWith('__', i)) {
      const mark = text.slice(i, i + 2);
      const end = text.indexOf(mark, i + 2);
      if (end > i + 2 && text[i + 2] !== ' ') {
        flush();
        out.push(h('strong', null, inline(text.slice(i + 2, end))));
        i = end + 2;
        continue;
      }
    }
    if ((ch === '*' || ch === '_') && text[i + 1] !== ' ' && text[i + 1] !== ch) {
      // _ only opens emphasis at a word start, so snake_case stays as it is.
      const atWordStart = ch === '*' || i === 0 || /[\s(]/.test(text[i - 1]);
      let end = text.indexOf(ch, i + 1);
      while (end > 0 && text[end + 1] === ch) end = text.indexOf(ch, end + 2);
      if (atWordStart && end > i + 1 && text[end - 1] !== ' ' && (ch === '*' || end + 1 >= text.length || /[\s.,;:!?)]/.test(text[end + 1]))) {
        flush();
        out.push(h('em', null, inline(text.slice(i + 1, end))));
        i = end + 1;
        continue;
      }
    }
    buf += ch;
    i += 1;
  }
  flush();
  return out;
}

// plainText strips Markdown marks for one-line summaries (catalog cards).
export function plainText(src, max = 180) {
  const first = String(src ?? '').replace(/\r\n?/g, '\n').split(/\n\s*\n/).find((p) => p.trim() && !/^\s*(```|~~~)/.test(p)) || '';
  const t = first.replace(/^#+\s*/gm, '').replace(/^\s*(?:[-*+]|\d+[.)])\s+/gm, '').replace(/\[([^\]]+)\]\([^)]*\)/g, '$1')
    .replace(/[*_`]+/g, '').replace(/\s+/g, ' ').trim();
  return t.length > max ? `${t.slice(0, max - 1).trimEnd()}…` : t;
}
