// Switchyard console: tables, pagers, charts and small forms the pages share.
'use strict';

const W = (() => {
  const { h, api, act } = Console;

  function when(t) {
    if (!t) return '—';
    const d = new Date(t);
    return isNaN(d) ? String(t) : d.toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z');
  }

  function ago(seconds) {
    if (!seconds) return '0 s';
    if (seconds < 120) return Math.round(seconds) + ' s';
    if (seconds < 7200) return Math.round(seconds / 60) + ' min';
    return Math.round(seconds / 3600) + ' h';
  }

  function badge(text) {
    return h('span', { class: 'badge badge-' + String(text).replace(/[^a-z_]/g, '') }, text);
  }

  /** A table: `cols` is [[heading, row => cell], …]; an empty list says so. */
  function table(cols, rows, empty) {
    if (!rows.length) return h('p', { class: 'muted empty' }, empty || 'Nothing here.');
    return h('div', { class: 'scroll' }, h('table', {},
      h('thead', {}, h('tr', {}, cols.map(([head]) => h('th', {}, head)))),
      h('tbody', {}, rows.map((r) => h('tr', {}, cols.map(([, cell]) => h('td', {}, cell(r))))))));
  }

  /** A keyset-paged list (`items`, `next_cursor`): newest first, then "Older". */
  function cursorList(path, cols, empty) {
    const box = h('div', { class: 'list' });
    const load = async (before) => {
      const sep = path.includes('?') ? '&' : '?';
      const page = await api('GET', path + (before ? sep + 'before=' + encodeURIComponent(before) : ''));
      const older = page.next_cursor
        ? h('button', { class: 'pager', onclick: () => act(box, () => load(page.next_cursor)) }, 'Older →')
        : null;
      const newest = before ? h('button', { class: 'pager', onclick: () => act(box, () => load(null)) }, '← Newest') : null;
      box.replaceChildren(table(cols, page.items, empty), h('div', { class: 'pagers' }, newest, older));
    };
    return { box, load };
  }

  /** An offset-paged list (`total`, `page`, `page_size`, `items`). */
  function pagedList(path, cols, empty) {
    const box = h('div', { class: 'list' });
    let current = 1;
    const load = async (n) => {
      current = n;
      const sep = path.includes('?') ? '&' : '?';
      const page = await api('GET', path + sep + 'page=' + n + '&page_size=25');
      const pages = Math.max(1, Math.ceil(page.total / page.page_size));
      box.replaceChildren(table(cols, page.items, empty), h('div', { class: 'pagers' },
        n > 1 ? h('button', { class: 'pager', onclick: () => act(box, () => load(n - 1)) }, '← Previous') : null,
        h('span', { class: 'muted' }, 'page ' + n + ' of ' + pages + ' · ' + page.total + ' in all'),
        n < pages ? h('button', { class: 'pager', onclick: () => act(box, () => load(n + 1)) }, 'Next →') : null));
    };
    return { box, load, reload: () => load(current) };
  }

  const SVG = 'http://www.w3.org/2000/svg';
  function s(tag, attrs, ...kids) {
    const el = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
    for (const kid of kids.flat(Infinity)) {
      if (kid != null) el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
    }
    return el;
  }

  /** A line chart over time: `points` [{at, value}], the y axis in `unit` (up to `fixedTop`
   * when given, else a round number above the largest value), UTC time labels. */
  function chart(title, unit, points, fixedTop) {
    const W_ = 640, H_ = 180, L = 64, B = 24, T = 10, R = 16;
    const values = points.map((p) => p.value);
    const top = fixedTop || niceCeil(Math.max(1, ...values));
    const t0 = points.length ? new Date(points[0].at).getTime() : 0;
    const t1 = points.length ? new Date(points[points.length - 1].at).getTime() : 1;
    const x = (t) => L + ((t - t0) / Math.max(1, t1 - t0)) * (W_ - L - R);
    const y = (v) => T + (1 - v / top) * (H_ - T - B);
    const grid = [0, 0.25, 0.5, 0.75, 1].map((f) => [
      s('line', { x1: L, x2: W_ - R, y1: y(top * f), y2: y(top * f), class: 'grid' }),
      s('text', { x: L - 4, y: y(top * f) + 4, 'text-anchor': 'end', class: 'axis' }, fmt(top * f) + ' ' + unit),
    ]);
    const ticks = points.filter((_, i) => i % Math.max(1, Math.floor(points.length / 6)) === 0).map((p) => {
      const t = new Date(p.at);
      return s('text', { x: x(t.getTime()), y: H_ - 6, 'text-anchor': 'middle', class: 'axis' },
        t.toISOString().slice(11, 16));
    });
    const path = points.map((p, i) => (i ? 'L' : 'M') + x(new Date(p.at).getTime()).toFixed(1) + ' '
      + y(p.value).toFixed(1)).join(' ');
    return h('figure', { class: 'chart' }, h('figcaption', {}, title, h('span', { class: 'muted' }, ' · time in UTC')),
      s('svg', { viewBox: `0 0 ${W_} ${H_}`, role: 'img', 'aria-label': title },
        grid, ticks, s('path', { d: path || 'M0 0', class: 'line' })));
  }

  function niceCeil(v) {
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 5, 10]) if (m * p >= v) return m * p;
    return 10 * p;
  }

  function fmt(v) {
    return v >= 100 ? Math.round(v).toString() : v >= 10 ? v.toFixed(0) : v.toFixed(v ? 1 : 0);
  }

  /** A secret shown once, with a copy button. */
  function onceBox(label, secret) {
    const code = h('code', { class: 'secret' }, secret);
    const copied = h('span', { class: 'muted' });
    return h('div', { class: 'once', role: 'status' }, h('strong', {}, label), ' (shown once: copy it now)',
      h('div', {}, code, ' ', h('button', { type: 'button', onclick: async () => {
        try { await navigator.clipboard.writeText(secret); copied.textContent = 'copied'; } catch {
          copied.textContent = 'select and copy it by hand';
        }
      } }, 'Copy'), ' ', copied));
  }

  /** A form whose fields are [[name, label, attrs]]; `submit(values)` runs as an action. */
  function form(fields, label, submit) {
    const out = h('div', {});
    const inputs = fields.map(([name, text, attrs]) => {
      const input = attrs && attrs.type === 'textarea'
        ? h('textarea', { name, ...attrs, type: null })
        : h('input', { name, ...(attrs || {}) });
      return [name, input, h('label', {}, h('span', {}, text), input)];
    });
    const el = h('form', { class: 'inline-form', onsubmit: (e) => {
      e.preventDefault();
      const values = Object.fromEntries(inputs.map(([n, i]) => [n, i.type === 'checkbox' ? i.checked : i.value]));
      act(out, () => submit(values, out));
    } }, inputs.map(([, , l]) => l), h('button', { type: 'submit' }, label), out);
    return el;
  }

  return { when, ago, badge, table, cursorList, pagedList, chart, onceBox, form };
})();
