// Page-wide state held in memory only: the signed-in account and the API
// keys created in this tab. Nothing here is written to the browser's web
// storage; a reload forgets the keys, as it should.

import { api, Problem } from './api.js';

export const state = {
  me: null,
  // sessionKeys are {id, name, prefix, key} of keys created in this tab.
  sessionKeys: [],
};

// loadMe refreshes state.me from GET /api/v1/me (null when signed out).
export async function loadMe() {
  try {
    state.me = await api('GET', '/api/v1/me');
  } catch (e) {
    if (!(e instanceof Problem) || (e.status !== 401 && e.status !== 403)) throw e;
    state.me = null;
  }
  return state.me;
}

// forgetKey drops a key from the tab's memory (after it is revoked).
export function forgetKey(id) {
  state.sessionKeys = state.sessionKeys.filter((k) => k.id !== id);
}
