// Switchyard console: the parts every page uses. Everything the API returns is put on the
// page as text (textContent, attribute values), never parsed as HTML, so a hostile event
// type, description or response body runs nothing. The API key lives in this tab's
// sessionStorage only: never a cookie, a URL or localStorage; requests carry it in the
// Authorization header and no ambient credentials exist to forge across sites.
'use strict';

const Console = (() => {
  const KEY = 'switchyard.api_key';
  const state = { key: sessionStorage.getItem(KEY), me: null, timers: [] };

  /** An element with attributes (`on…` are listeners) and children (strings become text). */
  function h(tag, attrs, ...kids) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v == null || v === false) continue;
      if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
      else if (k === 'class') el.className = v;
      else el.setAttribute(k, v === true ? '' : String(v));
    }
    for (const kid of kids.flat(Infinity)) {
      if (kid == null || kid === false) continue;
      el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
    }
    return el;
  }

  class Problem extends Error {
    constructor(status, title, detail, errors) {
      super(detail || title);
      Object.assign(this, { status, title, detail, errors: errors || [] });
    }
  }

  /** Calls `/api/v1{path}` with the key; a problem answer is thrown as a `Problem`. */
  async function api(method, path, body) {
    const headers = { Authorization: 'Bearer ' + state.key, Accept: 'application/json' };
    const opts = { method, headers, credentials: 'omit', cache: 'no-store' };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      opts.body = JSON.stringify(body);
    }
    let resp;
    try {
      resp = await fetch('/api/v1' + path, opts);
    } catch (e) {
      throw new Problem(0, 'Network error', 'Switchyard did not answer: ' + e.message);
    }
    const text = await resp.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch { data = text; }
    if (!resp.ok) {
      const p = data && typeof data === 'object' ? data : {};
      const problem = new Problem(resp.status, p.title || resp.statusText,
        p.detail || String(text).slice(0, 300), p.errors);
      if (resp.status === 401 && path !== '/whoami') signOut(problem.detail);
      throw problem;
    }
    return data;
  }

  /** Downloads `/api/v1{path}` (a CSV) with the key, as a file. */
  async function download(path, filename) {
    const resp = await fetch('/api/v1' + path, {
      headers: { Authorization: 'Bearer ' + state.key }, credentials: 'omit', cache: 'no-store',
    });
    if (!resp.ok) throw new Problem(resp.status, resp.statusText, await resp.text());
    const url = URL.createObjectURL(await resp.blob());
    const a = h('a', { href: url, download: filename });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  }

  // Scopes, as the API grants them: admin holds all; write holds read; a tenant's key never
  // holds the platform's (tenants, jobs, PIDMS, Sikka).
  const PLATFORM_ONLY = ['tenants:manage', 'jobs:', 'pidms:', 'sikka:'];
  function can(scope) {
    const me = state.me;
    if (!me) return false;
    if (me.tenant_id && PLATFORM_ONLY.some((p) => scope.startsWith(p))) return false;
    return me.scopes.some((s) => s === 'admin' || s === scope
      || (scope.endsWith(':read') && s === scope.replace(':read', ':write')));
  }

  function signOut(why) {
    sessionStorage.removeItem(KEY);
    state.key = null;
    state.me = null;
    render(why);
  }

  // The router: `/console/…` paths to pages, deep links included.
  const pages = [];
  function page(pattern, title, fn, scope) { pages.push({ pattern, title, fn, scope }); }

  function go(path) {
    history.pushState(null, '', path);
    render();
  }

  function link(path, ...text) {
    return h('a', { href: path, onclick: (e) => {
      if (e.ctrlKey || e.metaKey || e.shiftKey || e.button !== 0) return;
      e.preventDefault();
      go(path);
    } }, ...text);
  }

  /** Refreshes a page every `ms` while it is shown. */
  function every(ms, fn) { state.timers.push(setInterval(fn, ms)); }

  function problemBox(e) {
    if (!(e instanceof Problem)) return h('div', { class: 'problem', role: 'alert' }, String(e));
    return h('div', { class: 'problem', role: 'alert' },
      h('strong', {}, e.title || 'Error'), ' ', e.detail || '',
      e.errors.length ? h('ul', {}, e.errors.map((f) => h('li', {}, f.field + ': ' + f.message))) : null);
  }

  /** Runs `fn` (an action), showing its problem in `where` rather than failing silently. */
  async function act(where, fn) {
    where.replaceChildren();
    try { await fn(); } catch (e) { where.replaceChildren(problemBox(e)); }
  }

  function signInForm(why) {
    const err = h('div', {});
    if (why) err.append(problemBox(new Problem(401, 'Signed out', why)));
    const input = h('input', { name: 'api_key', type: 'password', autocomplete: 'off',
      placeholder: 'sy_live_…', required: true, 'aria-label': 'API key' });
    const form = h('form', { class: 'signin', onsubmit: async (e) => {
      e.preventDefault();
      state.key = input.value.trim();
      try {
        state.me = await api('GET', '/whoami');
        sessionStorage.setItem(KEY, state.key);
        render();
      } catch (ex) {
        state.key = null;
        err.replaceChildren(problemBox(ex));
      }
    } }, h('h1', {}, 'Sign in'),
    h('p', {}, 'Paste an API key. It stays in this tab only and is forgotten when you sign out or close it.'),
    input, h('button', { type: 'submit' }, 'Sign in'), err);
    return form;
  }

  function nav() {
    const items = [
      ['/console', 'Overview', null], ['/console/webhooks', 'Webhooks', 'webhooks:read'],
      ['/console/events', 'Events', 'webhooks:read'], ['/console/api-keys', 'API keys', 'keys:manage'],
      ['/console/tenants', 'Tenants', 'tenants:manage'], ['/console/audit-log', 'Audit log', 'audit:read'],
      ['/console/pidms', 'PIDMS', 'pidms:read'], ['/console/sikka', 'Sikka', 'sikka:read'],
      ['/console/schedules', 'Schedules', 'jobs:read'],
    ];
    return items.filter(([, , s]) => !s || can(s)).map(([p, t]) => link(p, t));
  }

  async function render(why) {
    state.timers.forEach(clearInterval);
    state.timers = [];
    const main = document.getElementById('main');
    const navEl = document.getElementById('nav');
    const who = document.getElementById('who');
    if (!state.key) {
      navEl.replaceChildren();
      who.replaceChildren();
      main.replaceChildren(signInForm(why));
      return;
    }
    if (!state.me) {
      try { state.me = await api('GET', '/whoami'); } catch (e) { signOut(e.detail); return; }
    }
    navEl.replaceChildren(...nav());
    who.replaceChildren(
      h('span', { class: 'muted' }, state.me.tenant_id ? 'tenant ' + state.me.tenant_id : 'platform',
        ' · ', state.me.key_id),
      h('button', { class: 'link', onclick: () => signOut() }, 'Sign out'));
    const path = location.pathname.replace(/\/+$/, '') || '/console';
    for (const p of pages) {
      const m = path.match(p.pattern);
      if (!m) continue;
      document.title = p.title + ' · Switchyard';
      if (p.scope && !can(p.scope)) {
        main.replaceChildren(h('h1', {}, p.title),
          problemBox(new Problem(403, 'Forbidden', 'This key lacks the scope `' + p.scope + '`.')));
        return;
      }
      main.replaceChildren(h('p', { class: 'muted' }, 'Loading…'));
      try {
        const content = await p.fn(...m.slice(1).map(decodeURIComponent));
        main.replaceChildren(...[content].flat());
      } catch (e) {
        main.replaceChildren(h('h1', {}, p.title), problemBox(e));
      }
      return;
    }
    main.replaceChildren(h('h1', {}, 'Not found'), h('p', {}, 'No console page is at ', path, '.'));
  }

  window.addEventListener('popstate', () => render());
  document.addEventListener('DOMContentLoaded', () => render());

  return { h, api, can, page, link, go, every, act, problemBox, download, render, Problem, state };
})();
