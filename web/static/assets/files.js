// Reading files the user picks, for uploads inside JSON bodies (wasm modules).

// CHUNK is how many bytes are turned into base64 at a time: a multiple of 3,
// so the chunks' base64 texts join without padding in between, and small
// enough for String.fromCharCode's argument list.
const CHUNK = 3 * 8192;

// bytesToBase64 encodes bytes (a Uint8Array) as standard base64 with padding.
// It works chunk by chunk and joins the parts once, so a module of many
// megabytes never builds one huge binary string or a long chain of
// concatenations.
export function bytesToBase64(bytes) {
  const parts = [];
  for (let i = 0; i < bytes.length; i += CHUNK) {
    parts.push(btoa(String.fromCharCode.apply(null, bytes.subarray(i, i + CHUNK))));
  }
  return parts.join('');
}

// readBytes reads a File (or Blob) into a Uint8Array.
export async function readBytes(file) {
  if (typeof file.arrayBuffer === 'function') return new Uint8Array(await file.arrayBuffer());
  return new Promise((resolve, reject) => {
    const r = new FileReader();
    r.addEventListener('load', () => resolve(new Uint8Array(r.result)));
    r.addEventListener('error', () => reject(r.error || new Error('the file could not be read')));
    r.readAsArrayBuffer(file);
  });
}

// readBase64 reads a File as standard base64.
export async function readBase64(file) {
  return bytesToBase64(await readBytes(file));
}

// WASM_MAGIC starts every WebAssembly binary: "\0asm".
const WASM_MAGIC = [0x00, 0x61, 0x73, 0x6d];

// looksLikeWasm reports whether bytes start like a WebAssembly binary. The
// server validates the module; this only catches a wrong file early.
export function looksLikeWasm(bytes) {
  return bytes.length >= 8 && WASM_MAGIC.every((b, i) => bytes[i] === b);
}

// fmtBytes shows a size as B, KiB or MiB.
export function fmtBytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / (1024 * 1024)).toFixed(1)} MiB`;
}
