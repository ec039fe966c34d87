#!/usr/bin/env python3
"""Writes the Grafana dashboards in dashboards/json/ from the panel lists below.

Panels are data here so that layout (24-column grid, unique ids), units, the datasource uid
and `$__rate_interval` are applied the same way everywhere. Run it after editing; the test
suite (tests/ops.rs) regenerates into memory and fails if the committed JSON differs.

    python3 dashboards/generate.py
"""

import json
import os
import sys

DS = {"type": "prometheus", "uid": "prometheus"}
Q = 'queue=~"$queue"'
I = 'instance=~"$instance"'
QI = f"{Q}, {I}"
RI = "$__rate_interval"


def target(expr, legend="", fmt=None):
    t = {"datasource": DS, "expr": expr, "legendFormat": legend, "refId": "A"}
    if fmt:
        t["format"] = fmt
    return t


def panel(kind, title, unit, exprs, w=8, h=8, stack=False, description=""):
    """exprs: [(expr, legend)]."""
    targets = []
    for i, (expr, legend) in enumerate(exprs):
        t = target(expr, legend, "heatmap" if kind == "heatmap" else None)
        t["refId"] = chr(ord("A") + i)
        targets.append(t)
    p = {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DS,
        "targets": targets,
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {},
        "_w": w,
        "_h": h,
    }
    if kind == "timeseries":
        p["fieldConfig"]["defaults"]["custom"] = {
            "drawStyle": "line",
            "fillOpacity": 30 if stack else 10,
            "stacking": {"mode": "normal" if stack else "none", "group": "A"},
        }
        p["options"] = {"legend": {"displayMode": "list", "placement": "bottom"},
                        "tooltip": {"mode": "multi"}}
    if kind == "stat":
        p["options"] = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                        "colorMode": "value", "graphMode": "area"}
    if kind == "heatmap":
        p["options"] = {"calculate": False, "yAxis": {"unit": unit},
                        "color": {"mode": "scheme", "scheme": "Oranges"}}
        p["fieldConfig"]["defaults"]["custom"] = {"scaleDistribution": {"type": "linear"}}
    return p


def row(title):
    return {"type": "row", "title": title, "collapsed": False, "panels": [], "_w": 24, "_h": 1}


def quantiles(metric, by_extra, selector, legend_prefix=""):
    return [
        (f"histogram_quantile({q}, sum by (le{by_extra}) (rate({metric}_bucket{{{selector}}}[{RI}])))",
         f"{legend_prefix}p{int(q * 100)}")
        for q in (0.5, 0.95, 0.99)
    ]


def layout(panels):
    """Fills rows left to right on the 24-column grid; ids in order."""
    x = y = row_h = 0
    out = []
    for i, p in enumerate(panels, start=1):
        w, h = p.pop("_w"), p.pop("_h")
        if p["type"] == "row" or x + w > 24:
            y += row_h
            x, row_h = 0, 0
        p["id"] = i
        p["gridPos"] = {"x": x, "y": y, "w": w, "h": h}
        x += w
        row_h = max(row_h, h)
        if p["type"] == "row":
            y += h
            x, row_h = 0, 0
        out.append(p)
    return out


def variables(with_queue=True):
    v = []
    if with_queue:
        v.append({
            "name": "queue", "label": "queue", "type": "query", "datasource": DS,
            "query": {"query": "label_values(switchyard_queue_depth, queue)", "refId": "queue"},
            "definition": "label_values(switchyard_queue_depth, queue)",
            "includeAll": True, "multi": True, "allValue": ".*", "refresh": 2,
            "current": {"text": "All", "value": "$__all"},
        })
    v.append({
        "name": "instance", "label": "instance", "type": "query", "datasource": DS,
        "query": {"query": 'label_values(up{job=~"switchyard-.*"}, instance)', "refId": "instance"},
        "definition": 'label_values(up{job=~"switchyard-.*"}, instance)',
        "includeAll": True, "multi": True, "allValue": ".*", "refresh": 2,
        "current": {"text": "All", "value": "$__all"},
    })
    return v


def dashboard(uid, title, panels, with_queue=True, links=()):
    return {
        "uid": uid,
        "title": title,
        "tags": ["switchyard"],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": variables(with_queue)},
        "annotations": {"list": []},
        "links": [{"title": t, "type": "link", "url": u} for t, u in links],
        "panels": layout(panels),
    }


def overview():
    jobs = "switchyard_jobs_completed_total"
    p = [
        row("Golden signals"),
        panel("stat", "Throughput", "ops",
              [(f"sum(rate({jobs}{{{QI}}}[{RI}]))", "jobs/s")], w=4, h=4,
              description="Jobs finished per second (every outcome)."),
        panel("stat", "Error ratio", "percentunit",
              [(f'sum(rate({jobs}{{{QI}, outcome=~"failed|dead"}}[{RI}])) / sum(rate({jobs}{{{QI}}}[{RI}]))', "failed")],
              w=4, h=4),
        panel("stat", "p95 wait", "s",
              [(f"histogram_quantile(0.95, sum by (le) (rate(switchyard_job_wait_seconds_bucket{{{QI}}}[{RI}])))", "p95")],
              w=3, h=4, description="Enqueued (or due) to started."),
        panel("stat", "Oldest pending", "s",
              [(f"max(switchyard_queue_oldest_pending_age_seconds{{{Q}}})", "age")], w=3, h=4),
        panel("stat", "Depth", "short",
              [(f'sum(switchyard_queue_depth{{{Q}, state=~"pending|scheduled"}})', "jobs")], w=3, h=4),
        panel("stat", "Utilisation", "percentunit",
              [(f"sum(switchyard_worker_inflight{{{QI}}}) / sum(switchyard_worker_concurrency_limit{{{QI}}})", "busy")],
              w=3, h=4, description="Jobs in flight over the workers' concurrency limit."),
        panel("stat", "Processes up", "short",
              [('sum(up{job=~"switchyard-.*"})', "up")], w=4, h=4),

        row("Queues"),
        panel("timeseries", "Depth by state", "short",
              [(f"sum by (state) (switchyard_queue_depth{{{Q}}})", "{{state}}")], w=12, stack=True),
        panel("timeseries", "Oldest pending job", "s",
              [(f"max by (queue) (switchyard_queue_oldest_pending_age_seconds{{{Q}}})", "{{queue}}")], w=12),

        row("Processing"),
        panel("timeseries", "Outcomes", "ops",
              [(f"sum by (outcome) (rate({jobs}{{{QI}}}[{RI}]))", "{{outcome}}")], w=8, stack=True),
        panel("heatmap", "Job duration", "s",
              [(f"sum by (le) (rate(switchyard_job_duration_seconds_bucket{{{QI}}}[{RI}]))", "{{le}}")], w=8),
        panel("timeseries", "Job duration p50 / p95 / p99", "s",
              quantiles("switchyard_job_duration_seconds", "", QI), w=8),
        panel("timeseries", "Wait p50 / p95 / p99", "s",
              quantiles("switchyard_job_wait_seconds", "", QI), w=8),
        panel("timeseries", "Longest-running job", "s",
              [(f"max by (queue) (switchyard_job_running_max_age_seconds{{{QI}}})", "{{queue}}")], w=8,
              description="A hung job shows as a line that keeps climbing."),
        panel("timeseries", "In flight", "short",
              [(f"sum by (queue) (switchyard_worker_inflight{{{QI}}})", "{{queue}}")], w=8),

        row("Failures"),
        panel("timeseries", "Failed and dead by job", "ops",
              [(f'sum by (job, outcome) (rate({jobs}{{{QI}, outcome=~"failed|dead"}}[{RI}]))', "{{job}} {{outcome}}")],
              w=8),
        panel("timeseries", "Retries scheduled by job", "ops",
              [(f'sum by (job) (rate({jobs}{{{QI}, outcome="retry"}}[{RI}]))', "{{job}}")], w=8),
        panel("timeseries", "Dead jobs waiting", "short",
              [(f'sum by (queue) (switchyard_queue_depth{{{Q}, state="dead"}})', "{{queue}}")], w=8),
        panel("timeseries", "Attempt number at completion p95", "short",
              [(f"histogram_quantile(0.95, sum by (le, queue) (rate(switchyard_job_attempts_bucket{{{QI}}}[{RI}])))", "{{queue}}")],
              w=8),
        panel("timeseries", "Worker restarts", "ops",
              [(f"sum by (instance) (rate(switchyard_worker_restarts_total{{{I}}}[{RI}]))", "{{instance}}")], w=8),
        panel("timeseries", "Canary latency p95", "s",
              [(f"histogram_quantile(0.95, sum by (le, queue) (rate(switchyard_canary_latency_seconds_bucket{{{Q}}}[{RI}])))", "{{queue}}")],
              w=8, description="A no-op job through every queue each minute."),

        row("Webhooks"),
        panel("timeseries", "Deliveries by status class", "ops",
              [(f"sum by (status_class) (rate(switchyard_webhook_deliveries_total{{{I}}}[{RI}]))", "{{status_class}}")],
              w=8, stack=True),
        panel("timeseries", "End to end p50 / p95 / p99", "s",
              quantiles("switchyard_webhook_end_to_end_seconds", "", I), w=8,
              description="Event accepted to delivered."),
        panel("stat", "Endpoints disabled", "short",
              [('max(switchyard_webhook_endpoints{state="disabled"})', "disabled")], w=4, h=8),
        panel("stat", "Blocked by the SSRF guard (1h)", "short",
              [("sum(increase(switchyard_webhook_blocked_total[1h]))", "blocked")], w=4, h=8),

        row("Upstreams and schedules"),
        panel("timeseries", "Upstream requests", "reqps",
              [(f"sum by (upstream, status_class) (rate(switchyard_upstream_requests_total{{{I}}}[{RI}]))", "{{upstream}} {{status_class}}")],
              w=8),
        panel("timeseries", "Upstream latency p95", "s",
              [(f"histogram_quantile(0.95, sum by (le, upstream) (rate(switchyard_upstream_request_duration_seconds_bucket{{{I}}}[{RI}])))", "{{upstream}}")],
              w=8),
        panel("timeseries", "Upstream 429s", "reqps",
              [(f"sum by (upstream) (rate(switchyard_upstream_rate_limited_total{{{I}}}[{RI}]))", "{{upstream}}")], w=8),
        panel("stat", "Sikka token: least time left", "s",
              [("min(switchyard_sikka_token_expiry_seconds)", "left")], w=4),
        panel("timeseries", "Sikka token refreshes", "ops",
              [(f"sum by (outcome) (rate(switchyard_sikka_token_refresh_total[{RI}]))", "{{outcome}}")], w=6),
        panel("timeseries", "Sikka writebacks", "ops",
              [(f"sum by (outcome) (rate(switchyard_sikka_writebacks_total[{RI}]))", "{{outcome}}")], w=6),
        panel("timeseries", "Sikka writeback completion p95", "s",
              [(f"histogram_quantile(0.95, sum by (le) (rate(switchyard_sikka_writeback_completion_seconds_bucket[{RI}])))", "p95")],
              w=8),
        panel("timeseries", "PIDKey keys checked", "ops",
              [(f"sum(rate(switchyard_pidms_keys_checked_total[{RI}]))", "keys/s")], w=6),
        panel("stat", "PIDKey products low", "short",
              [("max(switchyard_pidms_low_inventory_products)", "low")], w=4),
        panel("bargauge", "Since each schedule's last success", "s",
              [("time() - max by (schedule) (switchyard_schedule_last_success_timestamp_seconds)", "{{schedule}}")],
              w=14, h=9),
        panel("timeseries", "Schedule runs", "ops",
              [(f"sum by (schedule, outcome) (rate(switchyard_schedule_runs_total[{RI}]))", "{{schedule}} {{outcome}}")],
              w=10, h=9),

        row("API"),
        panel("timeseries", "Requests by status class", "reqps",
              [(f"sum by (status_class) (rate(switchyard_http_requests_total{{{I}}}[{RI}]))", "{{status_class}}")],
              w=8, stack=True),
        panel("timeseries", "Latency p95 by route", "s",
              [(f"histogram_quantile(0.95, sum by (le, route) (rate(switchyard_http_request_duration_seconds_bucket{{{I}}}[{RI}])))", "{{route}}")],
              w=8),
        panel("timeseries", "Refused: rate limits and authentication", "reqps",
              [(f"sum(rate(switchyard_rate_limited_total{{{I}}}[{RI}]))", "rate limited"),
               (f"sum by (reason) (rate(switchyard_auth_failures_total{{{I}}}[{RI}]))", "auth: {{reason}}")],
              w=8),
    ]
    return dashboard("switchyard-overview", "Switchyard / Overview", p,
                     links=[("Webhooks", "/d/switchyard-webhooks")])


def webhooks():
    d = "switchyard_webhook_deliveries_total"
    p = [
        row("Deliveries"),
        panel("timeseries", "Deliveries by status class", "ops",
              [(f"sum by (status_class) (rate({d}{{{I}}}[{RI}]))", "{{status_class}}")], w=12, stack=True),
        panel("timeseries", "Deliveries by outcome", "ops",
              [(f"sum by (outcome) (rate({d}{{{I}}}[{RI}]))", "{{outcome}}")], w=12, stack=True),
        panel("stat", "Success ratio", "percentunit",
              [(f'sum(rate({d}{{{I}, status_class="2xx"}}[{RI}])) / sum(rate({d}{{{I}}}[{RI}]))', "2xx")], w=6, h=5),
        panel("stat", "Endpoints enabled", "short",
              [('max(switchyard_webhook_endpoints{state="enabled"})', "enabled")], w=6, h=5),
        panel("stat", "Endpoints disabled", "short",
              [('max(switchyard_webhook_endpoints{state="disabled"})', "disabled")], w=6, h=5),
        panel("stat", "Disabled in the last 24 h", "short",
              [("sum(increase(switchyard_webhook_endpoints_disabled_total[24h]))", "disabled")], w=6, h=5),

        row("Attempts"),
        panel("bargauge", "Attempts per delivery (distribution)", "short",
              [(f"sum by (le) (increase(switchyard_webhook_delivery_attempts_bucket{{{I}}}[$__range]))", "≤ {{le}}")],
              w=12, description="How many attempts finished deliveries took, over the dashboard's range."),
        panel("timeseries", "Attempt duration p50 / p95 / p99", "s",
              quantiles("switchyard_webhook_attempt_duration_seconds", "", I), w=12),
        panel("timeseries", "Retries scheduled and deferred", "ops",
              [(f'sum(rate(switchyard_jobs_completed_total{{queue="webhooks", {I}, outcome="retry"}}[{RI}]))', "retries"),
               (f"sum(rate(switchyard_webhook_deferred_total{{{I}}}[{RI}]))", "deferred (endpoint busy)")],
              w=12),
        panel("timeseries", "Blocked by the SSRF guard", "ops",
              [(f"sum(rate(switchyard_webhook_blocked_total{{{I}}}[{RI}]))", "blocked")], w=12),

        row("Latency"),
        panel("heatmap", "End to end (event accepted → delivered)", "s",
              [(f"sum by (le) (rate(switchyard_webhook_end_to_end_seconds_bucket{{{I}}}[{RI}]))", "{{le}}")], w=12, h=10),
        panel("timeseries", "End to end p50 / p95 / p99", "s",
              quantiles("switchyard_webhook_end_to_end_seconds", "", I), w=12, h=10),
        panel("timeseries", "Events published", "ops",
              [(f"sum(rate(switchyard_webhook_events_total{{{I}}}[{RI}]))", "events/s")], w=12),
        panel("timeseries", "Webhooks queue: oldest pending", "s",
              [('max(switchyard_queue_oldest_pending_age_seconds{queue="webhooks"})', "age")], w=12),
    ]
    return dashboard("switchyard-webhooks", "Switchyard / Webhooks", p, with_queue=False,
                     links=[("Overview", "/d/switchyard-overview")])


def render():
    return {
        "overview.json": json.dumps(overview(), indent=2, sort_keys=True) + "\n",
        "webhooks.json": json.dumps(webhooks(), indent=2, sort_keys=True) + "\n",
    }


if __name__ == "__main__":
    out_dir = os.path.join(os.path.dirname(os.path.abspath(__file__)), "json")
    os.makedirs(out_dir, exist_ok=True)
    for name, text in render().items():
        if "--stdout" in sys.argv:
            sys.stdout.write(f"=== {name}\n{text}")
            continue
        with open(os.path.join(out_dir, name), "w") as f:
            f.write(text)
