// Switchyard console: the pages. Each reads and writes through the public /api/v1 only, so
// the key's scopes and tenant bound what it shows; a control the key cannot use is not shown.
'use strict';

(() => {
  const { h, api, can, page, link, every, act, download } = Console;
  const { when, ago, badge, table, cursorList, pagedList, chart, onceBox, form } = W;
  const enc = encodeURIComponent;
  const section = (title, ...kids) => h('section', {}, h('h2', {}, title), ...kids);
  const hourAgo = () => new Date(Date.now() - 3600e3).toISOString();

  // ---- Overview
  page(/^\/console$/, 'Overview', async () => {
    const root = h('div', {}, h('h1', {}, 'Overview'));
    const queues = h('div', {}), charts = h('div', { class: 'charts' });
    const failures = h('div', {}), schedules = h('div', {});
    const refresh = async () => {
      if (can('jobs:read')) {
        await act(queues, async () => {
          const q = await api('GET', '/queues');
          queues.replaceChildren(table([
            ['Queue', (r) => link('/console/queues/' + enc(r.name), r.name)],
            ['Pending', (r) => r.pending], ['Scheduled', (r) => r.scheduled],
            ['Running', (r) => r.running], ['Failed', (r) => r.failed], ['Dead', (r) => r.dead],
            ['Oldest pending', (r) => ago(r.oldest_pending_age_seconds)],
          ], q.queues));
        });
        await act(schedules, async () => {
          const list = await api('GET', '/schedules');
          schedules.replaceChildren(table([
            ['Schedule', (r) => r.name], ['Last run', (r) => when(r.last_run_at)],
            ['Result', (r) => (r.last_error ? badge('failed') : r.last_run_at ? badge('ok') : '—')],
          ], list.filter((s) => s.last_run_at || s.enabled)));
        });
      }
      if (can('webhooks:read')) {
        await act(charts, async () => {
          const s = await api('GET', '/deliveries/series?since=' + enc(hourAgo()) + '&step=60');
          charts.replaceChildren(
            chart('Delivery attempts per minute', '/min', s.points.map((p) => ({ at: p.at, value: p.attempts }))),
            chart('Failure ratio', '%', s.points.map((p) => ({ at: p.at, value: p.attempts ? (100 * p.failed) / p.attempts : 0 })), 100));
        });
        await act(failures, async () => {
          const d = await api('GET', '/deliveries?status=failed&limit=10');
          failures.replaceChildren(deliveriesTable(d.items));
        });
      }
    };
    await refresh();
    every(10000, refresh);
    if (can('jobs:read')) root.append(section('Queues', queues));
    if (can('webhooks:read')) root.append(section('Deliveries, last hour', charts), section('Recent failures', failures));
    if (can('jobs:read')) root.append(section('Schedules', schedules));
    return root;
  });

  function deliveriesTable(items) {
    return table([
      ['Delivery', (r) => link('/console/deliveries/' + enc(r.id), r.id)],
      ['Endpoint', (r) => link('/console/webhooks/' + enc(r.endpoint_id), r.endpoint_id)],
      ['Status', (r) => badge(r.status)], ['Attempts', (r) => r.attempt_count],
      ['Last error', (r) => r.last_error || '—'], ['Created', (r) => when(r.created_at)],
    ], items, 'No deliveries.');
  }

  // ---- Queues
  const STATES = ['pending', 'scheduled', 'running', 'failed', 'dead'];
  page(/^\/console\/queues\/([^/]+)$/, 'Queue', async (queue) => {
    const params = new URLSearchParams(location.search);
    const state = STATES.includes(params.get('state')) ? params.get('state') : 'pending';
    const msg = h('div', {});
    const list = pagedList('/jobs?queue=' + enc(queue) + '&state=' + state, [
      ['Job', (r) => r.id], ['Kind', (r) => r.kind || '—'], ['Status', (r) => badge(r.status)],
      ['Attempts', (r) => r.attempts], ['Run at', (r) => when(r.run_at)],
      ['Last result', (r) => r.last_result || '—'],
      ['', (r) => (can('jobs:write') ? jobButtons(r, msg, () => list.load(1)) : '')],
    ], 'No ' + state + ' jobs.');
    await list.load(1);
    const bulk = [];
    if (can('jobs:write') && (state === 'failed' || state === 'dead')) {
      bulk.push(h('button', { onclick: () => act(msg, async () => {
        const r = await api('POST', '/jobs/retry', { queue, state });
        msg.replaceChildren(h('p', { role: 'status' }, r.count + ' retried.'));
        await list.load(1);
      }) }, 'Retry all ' + state));
    }
    if (can('jobs:write') && ['pending', 'scheduled', 'failed'].includes(state)) {
      bulk.push(h('button', { class: 'danger', onclick: () => act(msg, async () => {
        const r = await api('POST', '/jobs/discard', { queue, state });
        msg.replaceChildren(h('p', { role: 'status' }, r.count + ' discarded.'));
        await list.load(1);
      }) }, 'Discard all ' + state));
    }
    return [h('h1', {}, 'Queue ', queue),
      h('nav', { class: 'tabs' }, STATES.map((s) => link('/console/queues/' + enc(queue) + '?state=' + s,
        s === state ? h('strong', {}, s) : s))),
      h('div', { class: 'actions' }, bulk), msg, list.box];
  }, 'jobs:read');

  function jobButtons(job, msg, reload) {
    const btns = [];
    if (job.status === 'failed' || job.status === 'dead') {
      btns.push(h('button', { onclick: () => act(msg, async () => {
        await api('POST', '/jobs/retry', { ids: [job.id] });
        await reload();
      }) }, 'Retry'));
    }
    if (['pending', 'scheduled', 'failed'].includes(job.status)) {
      btns.push(h('button', { class: 'danger', onclick: () => act(msg, async () => {
        await api('POST', '/jobs/discard', { ids: [job.id] });
        await reload();
      }) }, 'Discard'));
    }
    return btns;
  }

  // ---- Webhooks
  page(/^\/console\/webhooks$/, 'Webhooks', async () => {
    const list = pagedList('/webhooks', [
      ['Endpoint', (r) => link('/console/webhooks/' + enc(r.id), r.id)], ['URL', (r) => r.url],
      ['Description', (r) => r.description || '—'], ['Events', (r) => r.event_types.join(' ')],
      ['Status', (r) => badge(r.status)], ['Failures', (r) => r.failure_count],
    ], 'No endpoints yet.');
    await list.load(1);
    const out = [h('h1', {}, 'Webhooks')];
    if (can('webhooks:write')) {
      out.push(section('New endpoint', form([
        ['url', 'URL', { type: 'url', required: true, placeholder: 'https://example.com/hooks' }],
        ['event_types', 'Event types', { required: true, placeholder: 'order.* invoice.paid' }],
        ['description', 'Description', {}],
      ], 'Create', async (v, out2) => {
        const body = { url: v.url, event_types: v.event_types.split(/[\s,]+/).filter(Boolean) };
        if (v.description) body.description = v.description;
        const made = await api('POST', '/webhooks', body);
        out2.replaceChildren(onceBox('Signing secret of ' + made.id, made.secret),
          h('p', {}, link('/console/webhooks/' + enc(made.id), 'Open ' + made.id)));
        await list.load(1);
      })));
    }
    out.push(section('Endpoints', list.box));
    return out;
  }, 'webhooks:read');

  page(/^\/console\/webhooks\/([^/]+)$/, 'Webhook', async (id) => {
    const ep = await api('GET', '/webhooks/' + enc(id));
    const msg = h('div', {});
    const deliveries = pagedList('/webhooks/' + enc(id) + '/deliveries', [
      ['Delivery', (r) => link('/console/deliveries/' + enc(r.id), r.id)], ['Status', (r) => badge(r.status)],
      ['Attempts', (r) => r.attempt_count], ['Last status', (r) => r.last_status_code ?? '—'],
      ['Created', (r) => when(r.created_at)],
    ], 'No deliveries yet.');
    await deliveries.load(1);
    const facts = h('dl', { class: 'facts' }, [
      ['URL', ep.url], ['Description', ep.description || '—'], ['Event types', ep.event_types.join(' ')],
      ['Status', badge(ep.status)], ['Disabled because', ep.disabled_reason || '—'],
      ['Consecutive failures', ep.failure_count], ['Last success', when(ep.last_success_at)],
      ['Last failure', when(ep.last_failure_at)], ['Last error', ep.last_error || '—'],
      ['Rate limit', ep.rate_limit_per_second ? ep.rate_limit_per_second + ' /s' : 'none'],
      ['Tenant', ep.tenant_id || 'platform'],
    ].map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
    const controls = [];
    if (can('webhooks:write')) {
      controls.push(
        h('button', { onclick: () => act(msg, async () => {
          await api('PATCH', '/webhooks/' + enc(id), { enabled: ep.status !== 'enabled' });
          Console.render();
        }) }, ep.status === 'enabled' ? 'Disable' : 'Enable'),
        h('button', { onclick: () => act(msg, async () => {
          const r = await api('POST', '/webhooks/' + enc(id) + '/rotate-secret');
          msg.replaceChildren(onceBox('New signing secret', r.secret),
            h('p', { class: 'muted' }, 'The old secret keeps signing until ' + when(r.previous_valid_until) + '.'));
        }) }, 'Rotate secret'),
        h('button', { onclick: () => act(msg, async () => {
          const r = await api('POST', '/webhooks/' + enc(id) + '/test');
          msg.replaceChildren(h('p', { role: 'status' }, 'Test sent: ',
            link('/console/deliveries/' + enc(r.delivery_id), r.delivery_id)));
          await deliveries.load(1);
        }) }, 'Send test'),
        form([['since', 'Recover failed since', { type: 'datetime-local', required: true }]], 'Recover',
          async (v, out2) => {
            const r = await api('POST', '/webhooks/' + enc(id) + '/recover',
              { since: new Date(v.since + 'Z').toISOString() });
            out2.replaceChildren(h('p', { role: 'status' }, r.count + ' failed deliveries attempted again.'));
            await deliveries.load(1);
          }));
    }
    return [h('h1', {}, 'Webhook ', id), facts, h('div', { class: 'actions' }, controls), msg,
      section('Deliveries', deliveries.box)];
  }, 'webhooks:read');

  page(/^\/console\/deliveries\/([^/]+)$/, 'Delivery', async (id) => {
    const d = await api('GET', '/deliveries/' + enc(id));
    const msg = h('div', {});
    const retry = can('webhooks:write') && d.status === 'failed'
      ? h('button', { onclick: () => act(msg, async () => {
        await api('POST', '/deliveries/' + enc(id) + '/retry');
        Console.render();
      }) }, 'Redeliver') : null;
    return [h('h1', {}, 'Delivery ', id),
      h('dl', { class: 'facts' }, [['Status', badge(d.status)], ['Event', link('/console/events/' + enc(d.event_id), d.event_id)],
        ['Endpoint', link('/console/webhooks/' + enc(d.endpoint_id), d.endpoint_id)],
        ['Attempts', d.attempt_count + ' of ' + d.max_attempts], ['Next attempt', when(d.next_attempt_at)],
        ['Delivered', when(d.delivered_at)]].map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)])),
      h('div', { class: 'actions' }, retry), msg,
      section('Attempts', table([
        ['#', (a) => a.n], ['At', (a) => when(a.at)], ['Status', (a) => a.status_code ?? '—'],
        ['Outcome', (a) => badge(a.outcome)], ['Duration', (a) => a.duration_ms.toFixed(1) + ' ms'],
        ['Error', (a) => a.error || '—'],
        ['Response body', (a) => (a.response_body ? h('pre', { class: 'body' }, a.response_body) : '—')],
      ], d.attempts || [], 'Not attempted yet.'))];
  }, 'webhooks:read');

  // ---- Events
  page(/^\/console\/events$/, 'Events', async () => {
    const list = cursorList('/events?limit=25', [
      ['Event', (r) => link('/console/events/' + enc(r.id), r.id)], ['Type', (r) => r.type],
      ['Source', (r) => r.source || '—'], ['Deliveries', (r) => r.delivery_count],
      ['Delivered', (r) => r.delivery_status_counts.delivered], ['Failed', (r) => r.delivery_status_counts.failed],
      ['Published', (r) => when(r.created_at)],
    ], 'No events yet.');
    await list.load(null);
    return [h('h1', {}, 'Events'), list.box];
  }, 'webhooks:read');

  page(/^\/console\/events\/([^/]+)$/, 'Event', async (id) => {
    const e = await api('GET', '/events/' + enc(id));
    return [h('h1', {}, 'Event ', id),
      h('dl', { class: 'facts' }, [['Type', e.type], ['Source', e.source || '—'], ['Published', when(e.created_at)],
        ['Tenant', e.tenant_id || 'platform']].map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)])),
      section('Payload', h('pre', { class: 'body' }, JSON.stringify(e.payload, null, 2))),
      section('Deliveries', deliveriesTable(e.deliveries || []))];
  }, 'webhooks:read');

  // ---- API keys
  const SCOPES = ['admin', 'keys:manage', 'webhooks:read', 'webhooks:write', 'events:publish', 'usage:read',
    'audit:read', 'jobs:read', 'jobs:write', 'pidms:read', 'pidms:write', 'sikka:read', 'sikka:write', 'tenants:manage'];
  page(/^\/console\/api-keys$/, 'API keys', async () => {
    const msg = h('div', {});
    const usage = h('div', {});
    const list = pagedList('/api-keys', [
      ['Name', (r) => r.name], ['Prefix', (r) => h('code', {}, r.prefix)], ['Scopes', (r) => r.scopes.join(' ')],
      ['Status', (r) => badge(r.status)], ['Tenant', (r) => r.tenant_id || 'platform'],
      ['Last used', (r) => when(r.last_used_at)], ['Requests', (r) => r.usage_count],
      ['', (r) => [
        can('usage:read') ? h('button', { onclick: () => act(usage, () => keyUsage(usage, r)) }, 'Usage') : null,
        r.status !== 'revoked' ? h('button', { class: 'danger', onclick: () => act(msg, async () => {
          await api('DELETE', '/api-keys/' + enc(r.id));
          await list.load(1);
        }) }, 'Revoke') : null]],
    ], 'No keys.');
    await list.load(1);
    const scopeBoxes = SCOPES.filter((s) => s === 'admin' || can(s)).map((s) =>
      h('label', { class: 'check' }, h('input', { type: 'checkbox', name: 'scope', value: s }), s));
    const fields = [
      ['name', 'Name', { required: true }],
      ['per_minute', 'Requests per minute', { type: 'number', min: 1 }],
      ['per_day', 'Requests per day', { type: 'number', min: 1 }],
      ['expires_at', 'Expires (UTC)', { type: 'datetime-local' }],
    ];
    if (!Console.state.me.tenant_id) fields.push(['tenant_id', 'Tenant id (blank: platform)', {}]);
    const create = form(fields, 'Create key', async (v, out) => {
      const body = { name: v.name, scopes: scopeBoxes.map((l) => l.firstChild).filter((c) => c.checked).map((c) => c.value) };
      const limits = {};
      if (v.per_minute) limits.per_minute = Number(v.per_minute);
      if (v.per_day) limits.per_day = Number(v.per_day);
      if (Object.keys(limits).length) body.rate_limits = limits;
      if (v.expires_at) body.expires_at = new Date(v.expires_at + 'Z').toISOString();
      if (v.tenant_id) body.tenant_id = v.tenant_id;
      const made = await api('POST', '/api-keys', body);
      out.replaceChildren(onceBox('API key ' + made.name, made.key));
      await list.load(1);
    });
    create.insertBefore(h('fieldset', {}, h('legend', {}, 'Scopes'), scopeBoxes), create.lastChild.previousSibling);
    return [h('h1', {}, 'API keys'), section('New key', create), msg, section('Keys', list.box), usage];
  }, 'keys:manage');

  async function keyUsage(where, key) {
    const q = 'key_id=' + enc(key.id) + '&since=' + enc(new Date(Date.now() - 24 * 3600e3).toISOString()) + '&step=3600';
    const s = await api('GET', '/usage/series?' + q);
    where.replaceChildren(section('Usage of ' + key.name + ', last 24 h',
      h('div', { class: 'charts' },
        chart('Requests per hour', '/h', s.points.map((p) => ({ at: p.at, value: p.requests }))),
        chart('p99 latency', 'ms', s.points.map((p) => ({ at: p.at, value: p.latency_ms.p99 })))),
      h('button', { onclick: () => act(where, () => download('/usage/export.csv?' + q, 'usage-' + key.id + '.csv')) },
        'Download CSV')));
  }

  // ---- Tenants
  page(/^\/console\/tenants$/, 'Tenants', async () => {
    const msg = h('div', {});
    const list = pagedList('/tenants', [
      ['Tenant', (r) => r.id], ['Name', (r) => r.name], ['Status', (r) => badge(r.status)],
      ['Created', (r) => when(r.created_at)],
      ['', (r) => h('button', { class: 'danger', onclick: () => act(msg, async () => {
        await api('DELETE', '/tenants/' + enc(r.id));
        await list.load(1);
      }) }, 'Delete')],
    ], 'No tenants yet.');
    await list.load(1);
    return [h('h1', {}, 'Tenants'), section('New tenant', form([['name', 'Name', { required: true }]], 'Create',
      async (v, out) => {
        const t = await api('POST', '/tenants', { name: v.name });
        out.replaceChildren(h('p', { role: 'status' }, 'Created ' + t.id + '.'));
        await list.load(1);
      })), msg, section('Tenants', list.box)];
  }, 'tenants:manage');

  // ---- Audit log
  page(/^\/console\/audit-log$/, 'Audit log', async () => {
    const results = h('div', {});
    const show = async (v) => {
      const q = new URLSearchParams({ limit: '50' });
      for (const k of ['action', 'actor_key_id', 'target_id']) if (v[k]) q.set(k, v[k]);
      if (v.since) q.set('since', new Date(v.since + 'Z').toISOString());
      const list = cursorList('/audit-log?' + q, [
        ['At', (r) => when(r.at)], ['Action', (r) => r.action], ['Target', (r) => r.target_type + ' ' + (r.target_id || '')],
        ['Actor', (r) => r.actor_key_prefix || r.client_addr || '—'], ['Outcome', (r) => badge(r.outcome)],
        ['Fields', (r) => r.changed_fields.join(' ')], ['Detail', (r) => r.detail || ''],
      ], 'No entries.');
      await list.load(null);
      results.replaceChildren(list.box);
    };
    await show({});
    return [h('h1', {}, 'Audit log'), form([
      ['action', 'Action', { placeholder: 'api_key.created' }], ['actor_key_id', 'Actor key id', {}],
      ['target_id', 'Target id', {}], ['since', 'Since (UTC)', { type: 'datetime-local' }],
    ], 'Filter', (v) => show(v)), results];
  }, 'audit:read');

  // ---- PIDMS
  page(/^\/console\/pidms$/, 'PIDMS', async () => {
    const p = await api('GET', '/pidms/products');
    const results = h('div', {});
    const progress = h('div', {});
    // Runs with their progress, live: refreshed every 2 s while the page is shown.
    const runs = pagedList('/pidms/syncs', [
      ['Run', (r) => r.id], ['Kind', (r) => r.kind], ['Status', (r) => badge(r.status)],
      ['Progress', (r) => r.batches_done + ' of ' + r.batches_total + ' batches'
        + (r.batches_failed ? ', ' + r.batches_failed + ' failed' : '')],
      ['Keys updated', (r) => r.keys_updated + ' of ' + r.keys_total], ['Started', (r) => when(r.started_at)],
    ], 'No checks or syncs yet.');
    await runs.load(1);
    every(2000, () => act(progress, () => runs.reload()));
    const follow = () => runs.load(1);
    const out = [h('h1', {}, 'PIDMS'), section('Products (low stock below ' + p.threshold + ' remaining)', table([
      ['Product', (r) => r.prd], ['Keys', (r) => r.key_count], ['Remaining', (r) => r.total_remaining],
      ['Average', (r) => r.avg_remaining.toFixed(1)], ['Stock', (r) => (r.low_inventory ? badge('low') : badge('ok'))],
    ], p.products, 'No keys stored yet.')),
    section('Search', form([['product', 'Product contains', {}]], 'Search', async (v) => {
      const list = pagedList('/pidms/keys' + (v.product ? '?product=' + enc(v.product) : ''), [
        ['Key', (r) => r.keyname_with_dash], ['Product', (r) => r.prd || '—'], ['Remaining', (r) => r.remaining ?? '—'],
        ['Blocked', (r) => r.blocked ?? '—'], ['Error', (r) => r.errorcode || '—'],
      ], 'No matching keys.');
      await list.load(1);
      results.replaceChildren(list.box);
    }), results)];
    if (can('pidms:write')) {
      out.push(section('Check keys', form([['keys', 'Keys, one per line', { type: 'textarea', rows: 4, required: true }]],
        'Start check', async (v) => {
          await api('POST', '/pidms/check', { keys: v.keys });
          await follow();
        })),
      section('Sync', h('button', { onclick: () => act(progress, async () => {
        await api('POST', '/pidms/sync', {});
        await follow();
      }) }, 'Re-check every key')));
    }
    out.push(progress, section('Checks and syncs', runs.box));
    return out;
  }, 'pidms:read');

  // ---- Sikka
  page(/^\/console\/sikka$/, 'Sikka', async () => {
    const practices = await api('GET', '/sikka/practices');
    const writebacks = pagedList('/sikka/writebacks', [
      ['Writeback', (r) => r.id], ['Operation', (r) => r.operation], ['Status', (r) => badge(r.status)],
      ['Result', (r) => r.result || r.error || '—'], ['Checks', (r) => r.check_count], ['Created', (r) => when(r.created_at)],
    ], 'No writebacks yet.');
    await writebacks.load(1);
    return [h('h1', {}, 'Sikka'), section('Practices', table([
      ['Office', (r) => r.office_id], ['Name', (r) => r.practice_name || '—'], ['Token', (r) => badge(r.token_status)],
      ['Expires', (r) => when(r.token_expires_at)], ['Error', (r) => r.token_error || '—'],
      ['Tenant', (r) => r.tenant_id || 'platform'],
    ], practices, 'No practices pulled yet.')), section('Writebacks', writebacks.box)];
  }, 'sikka:read');

  // ---- Schedules
  page(/^\/console\/schedules$/, 'Schedules', async () => {
    const msg = h('div', {});
    const list = await api('GET', '/schedules');
    return [h('h1', {}, 'Schedules'), msg, table([
      ['Schedule', (r) => r.name], ['Cron', (r) => r.cron || 'off'], ['Next run', (r) => when(r.next_run_at)],
      ['Last run', (r) => when(r.last_run_at)], ['Last result', (r) => r.last_error || (r.last_run_at ? 'ok' : '—')],
      ['Runs', (r) => r.runs + ' (' + r.failures + ' failed)'],
      ['', (r) => (can('jobs:write') ? h('button', { onclick: () => act(msg, async () => {
        await api('POST', '/schedules/' + enc(r.name) + '/run');
        msg.replaceChildren(h('p', { role: 'status' }, r.name + ' will run within a few seconds.'));
      }) }, r.run_requested_at ? 'Requested' : 'Run now') : '')],
    ], list)];
  }, 'jobs:read');
})();
