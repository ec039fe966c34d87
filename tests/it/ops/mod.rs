//! The ops pack (`dashboards/`, `docker-compose.yml`): Prometheus config, alert rules and their
//! unit tests through promtool; dashboards as generated, sane, and parseable PromQL; every
//! metric a dashboard or an alert names present in live scrapes of the three roles after a
//! workload; `promtool check metrics` on each scrape; a live Prometheus answering every panel
//! and firing the alerts on induced faults; the compose file's structure.

mod live;

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
