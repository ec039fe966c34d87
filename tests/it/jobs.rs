//! Jobs by state and bulk actions, on both backends (no workers run here, so jobs stay where
//! they are put): lists newest first and paged; discard and retry by (queue, state) and by
//! ids, answering how many changed and changing each job once; bad selections are 422s; one
//! audit entry per bulk request.

use std::time::Duration;

use serde_json::{Value, json};
use switchyard_shared::{
    jobs::{CanaryJob, Job},
    queue::QueueName,
};

use crate::support::TestEnv;

fn canary() -> Job {
    Job::Canary(CanaryJob { run_id: "jobs-test".into(), queue: QueueName::Maintenance, hold_ms: 0 })
}

fn ids(page: &Value) -> Vec<String> {
    page["items"].as_array().unwrap().iter().map(|j| j["id"].as_str().unwrap().to_owned()).collect()
}

async fn jobs_are_listed_by_state_and_changed_in_bulk(env: TestEnv) {
    let app = env.start_api_only().await;
    let queue = &app.services.queue;
    let mut due = Vec::new();
    for _ in 0..3 {
        due.push(queue.push(canary()).await.unwrap());
    }
    let mut later = Vec::new();
    for _ in 0..2 {
        later.push(queue.push_after(canary(), Duration::from_secs(3600)).await.unwrap());
    }
    let list =
        |state: &str, extra: &str| format!("/api/v1/jobs?queue=maintenance&state={state}{extra}");

    // Newest first, paged.
    let pending = app.get_expect(&list("pending", ""), 200).await;
    assert_eq!(pending["total"], 3);
    let newest_first: Vec<String> = due.iter().rev().cloned().collect();
    assert_eq!(ids(&pending), newest_first);
    assert!(pending["items"].as_array().unwrap().iter().all(|j| j["status"] == "pending"));
    let first = app.get_expect(&list("pending", "&page_size=2"), 200).await;
    let second = app.get_expect(&list("pending", "&page_size=2&page=2"), 200).await;
    assert_eq!([ids(&first), ids(&second)].concat(), newest_first);
    let scheduled = app.get_expect(&list("scheduled", ""), 200).await;
    assert_eq!(scheduled["total"], 2);
    assert_eq!(app.get_expect(&list("dead", ""), 200).await["total"], 0);

    // Discard by state, then by id; each job once.
    let by_state = json!({"queue": "maintenance", "state": "pending"});
    assert_eq!(app.post_json("/api/v1/jobs/discard", &by_state, 200).await["count"], 3);
    assert_eq!(app.post_json("/api/v1/jobs/discard", &by_state, 200).await["count"], 0);
    let one = json!({"ids": [later[0]]});
    assert_eq!(app.post_json("/api/v1/jobs/discard", &one, 200).await["count"], 1);
    assert_eq!(app.post_json("/api/v1/jobs/discard", &one, 200).await["count"], 0);
    let dead = app.get_expect(&list("dead", ""), 200).await;
    assert_eq!(dead["total"], 4);
    assert_eq!(app.get_expect(&list("pending", ""), 200).await["total"], 0);
    assert_eq!(app.get_expect(&list("scheduled", ""), 200).await["total"], 1);

    // Retry every dead one: they are pending again.
    let dead_ones = json!({"queue": "maintenance", "state": "dead"});
    assert_eq!(app.post_json("/api/v1/jobs/retry", &dead_ones, 200).await["count"], 4);
    assert_eq!(app.post_json("/api/v1/jobs/retry", &dead_ones, 200).await["count"], 0);
    assert_eq!(app.get_expect(&list("pending", ""), 200).await["total"], 4);
    let unknown = json!({"ids": ["01J00000000000000000000000"]});
    assert_eq!(app.post_json("/api/v1/jobs/retry", &unknown, 200).await["count"], 0);

    // Bad selections and lists.
    for (path, body) in [
        ("/api/v1/jobs/retry", json!({"queue": "maintenance", "state": "pending"})),
        ("/api/v1/jobs/discard", json!({"queue": "maintenance", "state": "running"})),
        ("/api/v1/jobs/retry", json!({"ids": []})),
        ("/api/v1/jobs/retry", json!({})),
        ("/api/v1/jobs/retry", json!({"queue": "maintenance"})),
        ("/api/v1/jobs/discard", json!({"queue": "nope", "state": "pending"})),
    ] {
        let answer = app.post_json(path, &body, 422).await;
        assert!(!answer["errors"][0]["field"].as_str().unwrap().is_empty(), "{answer}");
    }
    for bad in [
        "/api/v1/jobs?state=pending",
        "/api/v1/jobs?queue=maintenance",
        "/api/v1/jobs?queue=maintenance&state=lost",
        "/api/v1/jobs?queue=nope&state=dead",
        "/api/v1/jobs?queue=maintenance&state=dead&page=100&page_size=500",
    ] {
        app.get_expect(bad, 422).await;
    }

    // One entry per request that changed something.
    let log = app.get_expect("/api/v1/audit-log?action=jobs.discarded", 200).await;
    let entries = log["items"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "{log}");
    assert_eq!(entries[1]["target_id"], "maintenance");
    assert_eq!(entries[1]["detail"], "3 jobs");
    let log = app.get_expect("/api/v1/audit-log?action=jobs.retried", 200).await;
    assert_eq!(log["items"].as_array().unwrap().len(), 1);
    app.stop().await;
}
both_backends!(jobs_are_listed_by_state_and_changed_in_bulk);
