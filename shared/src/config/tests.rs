//! The configuration's own tests: sources, bounds, and the README table.

use std::collections::HashMap;

use super::*;

fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> =
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    move |k| map.get(k).cloned()
}

#[test]
fn defaults_are_valid_and_embedded() {
    let c = Config::load_with(None, &env_of(&[])).unwrap();
    c.validate().unwrap();
    assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(c.metrics_listen.to_string(), "127.0.0.1:9464");
    assert_eq!(c.store_kind(), StoreKind::Sqlite);
    assert!(!c.is_fleet_queue());
    assert_eq!(c.worker.queues.len(), 4);
}

#[test]
fn env_overrides_file_which_overrides_defaults() {
    let dir = std::env::temp_dir().join(format!("sy-config-{}", ulid::Ulid::generate()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("switchyard.toml");
    std::fs::write(
        &path,
        "listen = \"127.0.0.1:9000\"\nnamespace = \"fromfile\"\n[worker]\nconcurrency = 7\n",
    )
    .unwrap();
    let c = Config::load_with(
        Some(&path),
        &env_of(&[
            ("SWITCHYARD_NAMESPACE", "fromenv"),
            ("DATABASE_URL", "postgres://u:p@127.0.0.1/db"),
            ("SWITCHYARD_WORKER_QUEUES", "webhooks, pidms"),
        ]),
    )
    .unwrap();
    assert_eq!(c.listen.to_string(), "127.0.0.1:9000");
    assert_eq!(c.namespace, "fromenv");
    assert_eq!(c.worker.concurrency, 7);
    assert_eq!(c.worker.queues, vec![QueueName::Webhooks, QueueName::Pidms]);
    assert_eq!(c.store_kind(), StoreKind::Postgres);
    assert_eq!(format!("{:?}", c.database_url), "Some([redacted])");
}

#[test]
fn errors_name_the_setting() {
    let err =
        Config::load_with(None, &env_of(&[("SWITCHYARD_WORKER_CONCURRENCY", "lots")])).unwrap_err();
    assert!(err.to_string().starts_with("SWITCHYARD_WORKER_CONCURRENCY:"), "{err}");

    let c = Config::load_with(None, &env_of(&[("DATABASE_URL", "mysql://x")])).unwrap();
    let err = c.validate().unwrap_err();
    assert!(err.to_string().starts_with("DATABASE_URL:"), "{err}");

    let c = Config::load_with(None, &env_of(&[("SWITCHYARD_WORKER_CONCURRENCY", "0")])).unwrap();
    assert_eq!(
        c.validate().unwrap_err().to_string(),
        "SWITCHYARD_WORKER_CONCURRENCY: must be greater than zero"
    );

    let c =
        Config::load_with(None, &env_of(&[("SWITCHYARD_SCHEDULE_CANARY", "every now")])).unwrap();
    assert!(c.validate().unwrap_err().to_string().starts_with("SWITCHYARD_SCHEDULE_CANARY:"));

    let err =
        Config::load_with(None, &env_of(&[("SWITCHYARD_WORKER_QUEUES", "email")])).unwrap_err();
    assert!(err.to_string().contains("unknown queue"), "{err}");
}

#[test]
fn a_bad_webhook_proxy_is_refused_without_echoing_it() {
    for bad in ["socks5://user:hunter2@proxy:1080", "proxy:3128", "http://"] {
        let c = Config::load_with(None, &env_of(&[("SWITCHYARD_WEBHOOK_PROXY", bad)])).unwrap();
        let err = c.validate().unwrap_err().to_string();
        assert!(err.starts_with("SWITCHYARD_WEBHOOK_PROXY:"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }
    let c = Config::load_with(
        None,
        &env_of(&[("SWITCHYARD_WEBHOOK_PROXY", "http://user:pw@proxy.internal:3128")]),
    )
    .unwrap();
    c.validate().unwrap();
    assert_eq!(format!("{:?}", c.webhooks.proxy), "Some([redacted])");
}

const TABLE_BEGIN: &str =
    "<!-- settings: generated from shared/src/config, checked by a test -->\n";
const TABLE_END: &str = "<!-- end of settings -->";

#[test]
fn the_readme_settings_table_is_the_declaration() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md");
    let readme = std::fs::read_to_string(path).unwrap();
    let table = readme
        .split_once(TABLE_BEGIN)
        .and_then(|(_, rest)| rest.split_once(TABLE_END))
        .map(|(table, _)| table)
        .expect("README.md has the settings table between its markers");
    let want = markdown_table(&Config::settings());
    assert!(table == want, "README.md's settings table should read:\n{want}");
}

#[test]
fn every_setting_has_its_own_variable_and_doc_and_a_default_that_passes() {
    let settings = Config::settings();
    let mut names: Vec<_> = settings.iter().map(|s| s.env).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), settings.len(), "a variable is declared twice");
    assert!(settings.iter().all(|s| !s.doc.is_empty()), "a setting has no doc");
    assert!(settings.iter().any(|s| s.key == "webhooks.timeout_ms"));
    // Each declared default, given as the variable, reads back as the default.
    for s in &settings {
        let c =
            Config::load_with(None, &|name: &str| (name == s.env).then(|| s.default.to_owned()))
                .unwrap();
        c.validate().unwrap_or_else(|e| panic!("{}: {e}", s.env));
    }
}

#[test]
fn bounds_are_checked_by_name() {
    let cases = [
        ("SWITCHYARD_WEBHOOK_TIMEOUT_MS", "30001", "must be between 1 and 30000"),
        ("SWITCHYARD_PIDKEY_BATCH_SIZE", "51", "must be between 1 and 50"),
        ("SWITCHYARD_SCHEDULER_LEADER_TTL_SECS", "2", "must be at least 3"),
        ("SWITCHYARD_PIDKEY_BASE_URL", "ftp://x", "must be an http(s) URL"),
        ("SWITCHYARD_SIKKA_POLL_MAX_MS", "10", "must be at least SWITCHYARD_SIKKA_POLL_INITIAL_MS"),
        ("SIKKA_APP_ID", "id", "is needed with the other Sikka credential"),
    ];
    for (name, value, message) in cases {
        let c = Config::load_with(None, &env_of(&[(name, value)])).unwrap();
        let err = c.validate().unwrap_err().to_string();
        let want_name = if name == "SIKKA_APP_ID" { "SIKKA_APP_KEY" } else { name };
        assert!(err.starts_with(&format!("{want_name}: {message}")), "{name}={value}: {err}");
    }
}

#[test]
fn unknown_file_keys_are_refused() {
    let dir = std::env::temp_dir().join(format!("sy-config-{}", ulid::Ulid::generate()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.toml");
    std::fs::write(&path, "lisen = \"127.0.0.1:1\"\n").unwrap();
    let err = Config::load_with(Some(&path), &env_of(&[])).unwrap_err();
    assert!(err.to_string().contains("lisen"), "{err}");
}

#[test]
fn schedules_can_be_switched_off_or_changed() {
    let c = Config::load_with(
        None,
        &env_of(&[
            ("SWITCHYARD_SCHEDULE_CANARY", "off"),
            ("SWITCHYARD_SCHEDULE_QUEUE_VACUUM", "15 3 * * *"),
        ]),
    )
    .unwrap();
    c.validate().unwrap();
    assert_eq!(c.schedule_expr(ScheduleName::Canary), None);
    assert_eq!(c.schedule_expr(ScheduleName::QueueVacuum).as_deref(), Some("15 3 * * *"));
}
