//! A live system under a workload: every dashboard and alert metric in a scrape; a real Prometheus fires the alerts and answers every panel.

use super::*;

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
            support::expect_status(
                http.post(format!("{base}/api/v1/events"))
                    .json(&json!({"type": "ops.tick", "data": {"i": i}})),
                202,
                "POST request",
            )
            .await;
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
        support::expect_status(
            http.post(format!("{base}/api/v1/sikka/practices/refresh")),
            202,
            "POST request",
        )
        .await;
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
        support::expect_status(
            support::http_with_key("sy_test_nope").get(format!("{base}/api/v1/whoami")),
            401,
            "GET request",
        )
        .await;
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
    support::expect_status(
        admin
            .post(format!("{}/api/v1/webhooks", w.base))
            .json(&json!({"url": w.receiver.url("/gone-later"), "event_types": ["late.*"]})),
        201,
        "POST request",
    )
    .await;
    support::expect_status(
        admin
            .post(format!("{}/api/v1/events", w.base))
            .json(&json!({"type": "late.gone", "data": {}})),
        202,
        "POST request",
    )
    .await;
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
