//! The ops pack (`dashboards/`, `docker-compose.yml`): Prometheus config, alert rules and their
//! unit tests through promtool; dashboards as generated, sane, and parseable PromQL; every
//! metric a dashboard or an alert names present in live scrapes of the three roles after a
//! workload; `promtool check metrics` on each scrape; a live Prometheus answering every panel
//! and firing the alerts on induced faults; the compose file's structure.

use crate::support;

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use serde_json::{Value, json};
use support::{Backend, TestEnv, receiver::Receiver, receiver::Reply, wait_for};
use switchyard_simulators::{pidkey::PidkeySim, sikka::SikkaSim};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs promtool in `dashboards/`.
fn run_promtool(promtool: &Path, args: &[&str], stdin: Option<&str>) {
    support::run_promtool(promtool, &root().join("dashboards"), args, stdin);
}

fn dashboards() -> Vec<(String, Value)> {
    ["overview.json", "webhooks.json"]
        .into_iter()
        .map(|name| {
            let text = std::fs::read_to_string(root().join("dashboards/json").join(name)).unwrap();
            (name.to_owned(), serde_json::from_str(&text).unwrap())
        })
        .collect()
}

/// Every panel (rows included) of a dashboard.
fn panels(d: &Value) -> Vec<&Value> {
    d["panels"].as_array().unwrap().iter().collect()
}

/// Every (dashboard, panel title, expr).
fn dashboard_exprs() -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for (name, d) in dashboards() {
        for p in panels(&d) {
            for t in p["targets"].as_array().into_iter().flatten() {
                out.push((
                    name.clone(),
                    p["title"].as_str().unwrap().to_owned(),
                    t["expr"].as_str().unwrap().to_owned(),
                ));
            }
        }
    }
    out
}

/// Grafana's variables replaced by what Prometheus would see.
fn substitute(expr: &str) -> String {
    expr.replace("$__rate_interval", "1m")
        .replace("$__range", "1h")
        .replace("$__interval", "15s")
        .replace("$queue", ".*")
        .replace("$instance", ".*")
}

/// The `switchyard_…` names in a text.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("switchyard_") {
        let start = i + at;
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        let preceded =
            start > 0 && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        if !preceded {
            names.insert(text[start..end].to_owned());
        }
        i = end;
    }
    names
}

#[test]
fn promtool_checks_the_config_the_rules_and_their_tests() {
    let Some(promtool) = support::promtool() else { return };
    run_promtool(&promtool, &["check", "config", "prometheus.yml"], None);
    run_promtool(&promtool, &["check", "rules", "alerts.yml"], None);
    run_promtool(&promtool, &["test", "rules", "alerts.test.yml"], None);
    // Every alert has `for:`, a severity, a summary, a dashboard and a runbook section.
    let rules: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(root().join("dashboards/alerts.yml")).unwrap(),
    )
    .unwrap();
    let runbooks = std::fs::read_to_string(root().join("dashboards/README.md")).unwrap();
    let tests = std::fs::read_to_string(root().join("dashboards/alerts.test.yml")).unwrap();
    let mut count = 0;
    for group in rules["groups"].as_sequence().unwrap() {
        for rule in group["rules"].as_sequence().unwrap() {
            let name = rule["alert"].as_str().unwrap();
            count += 1;
            assert!(rule["for"].as_str().is_some(), "{name} has no for:");
            assert!(
                matches!(rule["labels"]["severity"].as_str(), Some("warning" | "critical")),
                "{name} severity"
            );
            for key in ["summary", "dashboard_url", "runbook"] {
                assert!(rule["annotations"][key].as_str().is_some(), "{name} has no {key}");
            }
            let anchor = rule["annotations"]["runbook"].as_str().unwrap();
            assert!(anchor.ends_with(&format!("#{}", name.to_lowercase())), "{name}: {anchor}");
            assert!(runbooks.contains(&format!("### {name}\n")), "no runbook for {name}");
            assert!(tests.contains(&format!("alertname: {name}\n")), "no unit test for {name}");
        }
    }
    assert_eq!(count, 10);
}

#[test]
fn dashboards_are_as_generated_sane_and_their_promql_parses() {
    // The committed JSON is what the generator writes.
    let Some(python) = support::which("python3") else {
        support::skip_or_fail("python3 is not installed");
        return;
    };
    let out = Command::new(python)
        .arg(root().join("dashboards/generate.py"))
        .arg("--stdout")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let generated = String::from_utf8(out.stdout).unwrap();
    for (name, _) in dashboards() {
        let committed =
            std::fs::read_to_string(root().join("dashboards/json").join(&name)).unwrap();
        assert!(
            generated.contains(&format!("=== {name}\n{committed}")),
            "dashboards/json/{name} is not what generate.py writes: run python3 dashboards/generate.py"
        );
    }
    let provisioning =
        std::fs::read_to_string(root().join("dashboards/provisioning/datasources/prometheus.yml"))
            .unwrap();
    let ds: serde_yaml::Value = serde_yaml::from_str(&provisioning).unwrap();
    let uid = ds["datasources"][0]["uid"].as_str().unwrap().to_owned();

    let mut uids = BTreeSet::new();
    for (name, d) in dashboards() {
        let text = d.to_string();
        assert!(!text.contains("${DS_"), "{name}: exported-for-sharing placeholders");
        assert!(uids.insert(d["uid"].as_str().unwrap().to_owned()), "{name}: duplicate uid");
        let vars: Vec<&str> = d["templating"]["list"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["name"].as_str().unwrap())
            .collect();
        assert!(vars.contains(&"instance"), "{name}: no instance variable");
        if name == "overview.json" {
            assert!(vars.contains(&"queue"), "{name}: no queue variable");
        }
        let mut ids = BTreeSet::new();
        for p in panels(&d) {
            let title = p["title"].as_str().unwrap();
            assert!(ids.insert(p["id"].as_i64().unwrap()), "{name}: duplicate panel id ({title})");
            let g = &p["gridPos"];
            let (x, w) = (g["x"].as_i64().unwrap(), g["w"].as_i64().unwrap());
            assert!(x >= 0 && w > 0 && x + w <= 24, "{name}/{title}: outside 24 columns");
            assert!(g["h"].as_i64().unwrap() > 0 && g["y"].as_i64().unwrap() >= 0);
            if p["type"] == "row" {
                continue;
            }
            assert_eq!(p["datasource"]["uid"], uid.as_str(), "{name}/{title}: datasource");
            let unit = p["fieldConfig"]["defaults"]["unit"].as_str().unwrap_or("");
            assert!(!unit.is_empty(), "{name}/{title}: no unit");
            for t in p["targets"].as_array().unwrap() {
                assert_eq!(
                    t["datasource"]["uid"],
                    uid.as_str(),
                    "{name}/{title}: target datasource"
                );
                let expr = t["expr"].as_str().unwrap();
                if expr.contains("rate(") {
                    assert!(
                        expr.contains("[$__rate_interval]"),
                        "{name}/{title}: rate without $__rate_interval"
                    );
                }
            }
        }
    }

    // Every expression parses: as recording rules for promtool.
    let Some(promtool) = support::promtool() else { return };
    let rules: Vec<Value> = dashboard_exprs()
        .iter()
        .enumerate()
        .map(|(i, (_, _, expr))| json!({"record": format!("dashboard:expr_{i}"), "expr": substitute(expr)}))
        .collect();
    let file = json!({"groups": [{"name": "dashboards", "rules": rules}]});
    let path = std::env::temp_dir().join(support::unique("dashboard-rules-") + ".yml");
    std::fs::write(&path, serde_yaml::to_string(&file).unwrap()).unwrap();
    run_promtool(&promtool, &["check", "rules", path.to_str().unwrap()], None);
    let _ = std::fs::remove_file(path);
}

#[test]
fn the_compose_file_names_every_service_with_a_health_check() {
    let text = std::fs::read_to_string(root().join("docker-compose.yml")).unwrap();
    let compose: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let services = compose["services"].as_mapping().unwrap();
    let names: BTreeSet<&str> = services.keys().map(|k| k.as_str().unwrap()).collect();
    let want = ["postgres", "redis", "api", "worker", "scheduler", "prometheus", "grafana"];
    assert_eq!(names, want.into_iter().collect());
    // Merge keys (`<<: *switchyard`) are resolved by compose; look through them.
    let field = |svc: &serde_yaml::Value, key: &str| -> Option<serde_yaml::Value> {
        svc.get(key).cloned().or_else(|| svc.get("<<").and_then(|base| base.get(key).cloned()))
    };
    for (name, svc) in services {
        let name = name.as_str().unwrap();
        let health = svc.get("healthcheck").unwrap_or_else(|| panic!("{name}: no healthcheck"));
        assert!(
            health["test"].as_sequence().is_some_and(|t| !t.is_empty()),
            "{name}: healthcheck test"
        );
        assert!(field(svc, "restart").is_some(), "{name}: no restart policy");
        assert!(field(svc, "image").is_some() || field(svc, "build").is_some(), "{name}: no image");
    }
    assert_eq!(services["worker"]["deploy"]["replicas"].as_i64(), Some(2));
    let redis_cmd = serde_yaml::to_string(&services["redis"]["command"]).unwrap();
    assert!(redis_cmd.contains("appendonly") && redis_cmd.contains("yes"), "Redis AOF on");
    let volumes: BTreeSet<&str> =
        compose["volumes"].as_mapping().unwrap().keys().map(|k| k.as_str().unwrap()).collect();
    for v in ["pgdata", "redisdata", "promdata", "grafanadata", "secrets"] {
        assert!(volumes.contains(v), "named volume {v}");
    }
    // The app roles share the store, queue and master key; Prometheus and Grafana read
    // their config from dashboards/.
    let env = field(&services["api"], "environment").unwrap();
    for key in ["DATABASE_URL", "REDIS_URL", "SWITCHYARD_MASTER_KEY_FILE"] {
        assert!(env.get(key).is_some(), "api env {key}");
    }
    let mounts = |svc: &str| serde_yaml::to_string(&services[svc]["volumes"]).unwrap();
    assert!(mounts("prometheus").contains("./dashboards/prometheus.yml"));
    assert!(mounts("prometheus").contains("./dashboards/alerts.yml"));
    assert!(mounts("grafana").contains("./dashboards/provisioning"));
    assert!(mounts("grafana").contains("./dashboards/json"));
    // Where a Docker CLI with the compose plugin exists, it must accept the file too.
    let compose = support::which("docker").filter(|docker| {
        Command::new(docker).args(["compose", "version"]).output().is_ok_and(|o| o.status.success())
    });
    match compose {
        Some(docker) => {
            let out = Command::new(docker)
                .args(["compose", "-f", "docker-compose.yml", "config", "-q"])
                .current_dir(root())
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "docker compose config: {stderr}");
        }
        None => eprintln!("no `docker compose` here: the structural checks above stand in for it"),
    }
}

async fn scrape(url: &str) -> String {
    reqwest::get(url).await.unwrap().text().await.unwrap()
}

/// API, worker and scheduler as separate processes on one store (the canary every second),
/// with simulators, after a workload through every area: webhooks (delivered, gone, hanging,
/// blocked), a PIDKey check with a 429, Sikka practices and writebacks through an expired
/// key, refused and rate-limited API requests.
struct Workload {
    api: support::ChildProcess,
    worker: support::ChildProcess,
    scheduler: support::ChildProcess,
    base: String,
    wbase: String,
    sbase: String,
    // Kept alive for as long as the processes use them.
    env: TestEnv,
    _servers: Vec<tokio::task::JoinHandle<std::io::Result<()>>>,
    receiver: Receiver,
    _sims: (PidkeySim, SikkaSim),
}

impl Workload {
    async fn run() -> Option<Self> {
        let mut env = TestEnv::new(Backend::Embedded).await?;
        let pidkey = PidkeySim::new(&["pk-ops"]);
        let (pk_addr, t1) =
            switchyard_simulators::serve("127.0.0.1:0".parse().unwrap(), pidkey.routes())
                .await
                .unwrap();
        let sikka = SikkaSim::new("ops-app", "ops-key");
        sikka.add_demo_practices(1);
        sikka.set_writeback_delay(Duration::from_millis(100));
        let (sk_addr, t2) =
            switchyard_simulators::serve("127.0.0.1:0".parse().unwrap(), sikka.app())
                .await
                .unwrap();
        for (k, v) in [
            ("SWITCHYARD_PIDKEY_BASE_URL", format!("http://{pk_addr}")),
            ("PIDKEY_API_KEY", "pk-ops".into()),
            ("SWITCHYARD_PIDKEY_RETRY_MAX_SECS", "5".into()),
            ("SWITCHYARD_PIDMS_LOW_INVENTORY_THRESHOLD", "100000000".into()),
            ("SWITCHYARD_SIKKA_BASE_URL", format!("http://{sk_addr}/v4")),
            ("SIKKA_APP_ID", "ops-app".into()),
            ("SIKKA_APP_KEY", "ops-key".into()),
            ("SWITCHYARD_SIKKA_POLL_INITIAL_MS", "100".into()),
            ("SWITCHYARD_SIKKA_POLL_MAX_MS", "200".into()),
            ("SWITCHYARD_SCHEDULE_CANARY", "* * * * * *".into()),
            ("SWITCHYARD_SCHEDULE_SIKKA_TOKEN_REFRESH", "* * * * * *".into()),
            ("SWITCHYARD_SCHEDULE_SIKKA_WRITEBACK_SWEEP", "* * * * * *".into()),
            ("SWITCHYARD_WEBHOOK_ALLOW_CIDRS", "127.0.0.1/32".into()),
            ("SWITCHYARD_WEBHOOK_ENDPOINT_CONCURRENCY", "1".into()),
            ("SWITCHYARD_WEBHOOK_TIMEOUT_MS", "300".into()),
        ] {
            env.set(k, v);
        }
        let (api, base) = env.spawn_api().await;
        let (worker, wbase) = env.spawn_role("worker", &[]).await;
        let (scheduler, sbase) = env.spawn_role("scheduler", &[]).await;
        let http = support::http_with_key(env.admin_key());

        // Webhooks: one endpoint that answers, one that is gone (disabled), one that hangs (the
        // others wait their turn: deferred), and one the SSRF guard blocks at connect time.
        let rx = Receiver::start().await;
        rx.script("/gone", vec![Reply::Status(410)]);
        rx.script("/hang", vec![Reply::Hang, Reply::Hang, Reply::Hang, Reply::Hang]);
        for (path, types) in [("/ok", "*"), ("/gone", "ops.*"), ("/hang", "ops.*")] {
            let resp = http
                .post(format!("{base}/api/v1/webhooks"))
                .json(&json!({"url": rx.url(path), "event_types": [types]}))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 201, "{}", resp.text().await.unwrap());
        }
        let blocked_url = format!("http://[::ffff:127.0.0.1]:{}/blocked", rx.addr.port());
        support::insert_endpoint(&env.services().await, &blocked_url, "ops.*").await;
        for i in 0..3 {
            let resp = http
                .post(format!("{base}/api/v1/events"))
                .json(&json!({"type": "ops.tick", "data": {"i": i}}))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 202);
        }

        // PIDKey: a check with one 429 on the way.
        pidkey.fail_next([switchyard_simulators::pidkey::Failure::RateLimited(Some(0))]);
        let resp = http
            .post(format!("{base}/api/v1/pidms/check?wait=20"))
            .json(&json!({"keys": "VK7JG-NPHTM-C97JM-9MPGT-3V66T\nAAAAABBBBBCCCCCDDDDDEEEEE"}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());

        // Sikka: practices, a writeback, then an expired key (a refresh).
        let resp =
            http.post(format!("{base}/api/v1/sikka/practices/refresh")).send().await.unwrap();
        assert_eq!(resp.status(), 202);
        let writeback = |http: reqwest::Client, base: String| async move {
            let body = json!({"office_id": "D1001", "operation": "update_patient", "target_id": "7",
                "body": {"email": "ops@example.com"}});
            let id = wait_for("a writeback accepted", Duration::from_secs(20), || async {
                let resp = http
                    .post(format!("{base}/api/v1/sikka/writebacks"))
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                if resp.status() != 202 {
                    return None;
                }
                resp.json::<Value>().await.unwrap()["id"].as_str().map(str::to_owned)
            })
            .await;
            wait_for("the writeback to complete", Duration::from_secs(30), || async {
                let w: Value =
                    support::get_value(&http, &format!("{base}/api/v1/sikka/writebacks/{id}"))
                        .await;
                (w["status"] == "completed").then_some(())
            })
            .await;
        };
        writeback(http.clone(), base.clone()).await;
        sikka.expire_keys();
        writeback(http.clone(), base.clone()).await;

        // The API refuses: a bad key, and a key over its rate limit.
        let resp = support::http_with_key("sy_test_nope")
            .get(format!("{base}/api/v1/whoami"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401);
        let created: Value = http
            .post(format!("{base}/api/v1/api-keys"))
            .json(&json!({"name": "tiny", "scopes": ["jobs:read"], "rate_limit_per_minute": 1}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let tiny = support::http_with_key(created["key"].as_str().unwrap());
        let mut statuses = Vec::new();
        for _ in 0..3 {
            statuses.push(
                tiny.get(format!("{base}/api/v1/whoami")).send().await.unwrap().status().as_u16(),
            );
        }
        assert!(statuses.contains(&429), "{statuses:?}");
        Some(Self {
            api,
            worker,
            scheduler,
            base,
            wbase,
            sbase,
            env,
            _servers: vec![t1, t2],
            receiver: rx,
            _sims: (pidkey, sikka),
        })
    }
}

/// Every metric the dashboards and alerts name is in the live scrapes of the three roles
/// after the workload, no panel rates a gauge, and promtool accepts each scrape.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_and_alert_metric_is_in_a_live_scrape() {
    let Some(promtool) = support::promtool() else { return };
    let Some(w) = Workload::run().await else { return };
    let Workload { api, worker, scheduler, base, wbase, sbase, .. } = w;
    // Wait for what the workload must have produced, then scrape all three.
    let wanted: BTreeSet<String> = {
        let mut names = BTreeSet::new();
        for (_, _, expr) in dashboard_exprs() {
            names.extend(metric_names(&expr));
        }
        names.extend(metric_names(
            &std::fs::read_to_string(root().join("dashboards/alerts.yml")).unwrap(),
        ));
        names
    };
    let scrapes = wait_for("every metric in a scrape", Duration::from_secs(60), || async {
        let scrapes = [
            ("api", scrape(&format!("{base}/metrics")).await),
            ("worker", scrape(&format!("{wbase}/metrics")).await),
            ("scheduler", scrape(&format!("{sbase}/metrics")).await),
        ];
        let present = |name: &str| {
            scrapes.iter().any(|(_, s)| {
                s.lines().any(|l| {
                    l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} "))
                })
            })
        };
        wanted.iter().all(|n| present(n)).then_some(scrapes)
    })
    .await;
    assert!(wanted.len() > 30, "the dashboards name {} metrics", wanted.len());

    // No rate or increase of a gauge.
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    for (_, s) in &scrapes {
        for l in s.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
            let mut parts = l.split_whitespace();
            if let (Some(n), Some(t)) = (parts.next(), parts.next()) {
                types.insert(n.to_owned(), t.to_owned());
            }
        }
    }
    for (dash, title, expr) in dashboard_exprs() {
        for func in ["rate(", "increase(", "irate("] {
            for (at, _) in expr.match_indices(func) {
                let rest = &expr[at + func.len()..];
                let name: String =
                    rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                let base = name.trim_end_matches("_bucket");
                let kind = types.get(base).map(String::as_str).unwrap_or("?");
                assert!(
                    matches!(kind, "counter" | "histogram"),
                    "{dash}/{title}: {func} of {name}, a {kind}"
                );
            }
        }
    }
    for (role, text) in &scrapes {
        eprintln!("promtool check metrics on the {role} scrape");
        run_promtool(&promtool, &["check", "metrics"], Some(text));
    }
    for child in [api, worker, scheduler] {
        child.signal("TERM");
        assert_eq!(child.wait(Duration::from_secs(20)).await, Some(0));
    }
}

/// A real Prometheus (Debian's `prometheus`) scrapes the three roles every second with
/// `dashboards/alerts.yml` loaded — its expressions as they are, its `for:` durations read as
/// seconds instead of minutes — and evaluates every second. After the workload, every query
/// of every dashboard panel returns data from it. The workload's endpoint that answers 410
/// fires `SwitchyardWebhookEndpointDisabled`; then the worker is killed: its scrape fails
/// (`SwitchyardProcessDown`, `SwitchyardRoleAbsent`) and the canary stops coming through
/// (`SwitchyardCanaryStale`), each seen firing through Prometheus' HTTP API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_prometheus_fires_the_alerts_and_answers_every_panel() {
    let Some(prometheus) = support::which("prometheus") else {
        support::skip_or_fail(
            "the prometheus server is not installed (Debian package `prometheus`)",
        );
        return;
    };
    let Some(w) = Workload::run().await else { return };
    let dir = std::env::temp_dir().join(support::unique("prometheus-"));
    std::fs::create_dir_all(&dir).unwrap();
    let rules = std::fs::read_to_string(root().join("dashboards/alerts.yml")).unwrap();
    let mut scaled = String::new();
    for line in rules.lines() {
        match line.trim_start().strip_prefix("for: ").and_then(|d| d.strip_suffix('m')) {
            Some(minutes) => {
                let indent = &line[..line.len() - line.trim_start().len()];
                scaled.push_str(&format!("{indent}for: {minutes}s\n"));
            }
            None => scaled.push_str(&format!("{line}\n")),
        }
    }
    assert_ne!(scaled, format!("{rules}\n"), "the rules have `for:` durations to scale");
    std::fs::write(dir.join("alerts.yml"), scaled).unwrap();
    let target = |base: &str| base.trim_start_matches("http://").to_owned();
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files: [alerts.yml]\n\
         scrape_configs:\n\
         \x20 - job_name: switchyard-api\n    static_configs: [{{targets: ['{}']}}]\n\
         \x20 - job_name: switchyard-worker\n    static_configs: [{{targets: ['{}']}}]\n\
         \x20 - job_name: switchyard-scheduler\n    static_configs: [{{targets: ['{}']}}]\n",
        target(&w.base),
        target(&w.wbase),
        target(&w.sbase)
    );
    std::fs::write(dir.join("prometheus.yml"), config).unwrap();
    let port = support::free_port();
    let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
    let mut server = tokio::process::Command::new(prometheus)
        .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
        .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .expect("starting prometheus");
    let prom = format!("http://127.0.0.1:{port}");
    let http = support::http();
    let query = |q: String| {
        let (http, prom) = (http.clone(), prom.clone());
        async move {
            let resp = http
                .get(format!("{prom}/api/v1/query"))
                .query(&[("query", q)])
                .send()
                .await
                .ok()?;
            let body: Value = resp.json().await.ok()?;
            (body["status"] == "success").then(|| body["data"]["result"].clone())
        }
    };
    wait_for("Prometheus to scrape all three roles", Duration::from_secs(60), || async {
        let up = query("sum(up{job=~\"switchyard-.*\"})".into()).await?;
        (up[0]["value"][1] == "3").then_some(())
    })
    .await;

    // Every panel query has data (rates need two scrapes in their window).
    let exprs = dashboard_exprs();
    let mut empty: Vec<(String, String, String)> = exprs.clone();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !empty.is_empty() && std::time::Instant::now() < deadline {
        let mut still = Vec::new();
        for (dash, title, expr) in empty {
            let result = query(substitute(&expr)).await;
            if result.as_ref().and_then(Value::as_array).is_none_or(|r| r.is_empty()) {
                still.push((dash, title, expr));
            }
        }
        empty = still;
        if !empty.is_empty() {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    assert!(empty.is_empty(), "panels without data: {empty:#?}");
    eprintln!("all {} panel queries answered with data", exprs.len());

    let firing = |name: &'static str| {
        let (http, prom) = (http.clone(), prom.clone());
        async move {
            let body: Value =
                http.get(format!("{prom}/api/v1/alerts")).send().await.ok()?.json().await.ok()?;
            body["data"]["alerts"]
                .as_array()?
                .iter()
                .find(|a| a["labels"]["alertname"] == name && a["state"] == "firing")
                .cloned()
        }
    };
    // An endpoint that answers 410, now that Prometheus watches (an alert on `increase()`
    // needs the counter to move while it is scraped).
    w.receiver.script("/gone-later", vec![Reply::Status(410)]);
    let admin = support::http_with_key(w.env.admin_key());
    let resp = admin
        .post(format!("{}/api/v1/webhooks", w.base))
        .json(&json!({"url": w.receiver.url("/gone-later"), "event_types": ["late.*"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let resp = admin
        .post(format!("{}/api/v1/events", w.base))
        .json(&json!({"type": "late.gone", "data": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    wait_for("SwitchyardWebhookEndpointDisabled to fire", Duration::from_secs(60), || {
        firing("SwitchyardWebhookEndpointDisabled")
    })
    .await;

    let Workload { api, worker, scheduler, .. } = w;
    worker.kill().await;
    let down = wait_for("SwitchyardProcessDown to fire", Duration::from_secs(60), || {
        firing("SwitchyardProcessDown")
    })
    .await;
    assert_eq!(down["labels"]["job"], "switchyard-worker", "{down}");
    let absent = wait_for("SwitchyardRoleAbsent to fire", Duration::from_secs(60), || {
        firing("SwitchyardRoleAbsent")
    })
    .await;
    assert_eq!(absent["labels"]["job"], "switchyard-worker", "{absent}");
    let stale = wait_for("SwitchyardCanaryStale to fire", Duration::from_secs(60), || {
        firing("SwitchyardCanaryStale")
    })
    .await;
    assert!(stale["annotations"]["summary"].as_str().unwrap().contains("no canary"), "{stale}");

    let _ = server.kill().await;
    for child in [api, scheduler] {
        child.signal("TERM");
        assert_eq!(child.wait(Duration::from_secs(20)).await, Some(0));
    }
    let _ = std::fs::remove_dir_all(&dir);
}
