//! The real binary as child processes, on both backends: a worker killed with SIGKILL
//! mid-job has its job finished by another; SIGTERM lets in-flight jobs finish and exits 0;
//! a bad setting is refused at start with its name.

mod support;

use std::time::Duration;

use support::{TestEnv, wait_for};
use switchyard_shared::{canary, queue::QueueName};

const WORKER_ARGS: &[&str] = &["worker", "--queues", "sikka", "--metrics-listen", "127.0.0.1:0"];

async fn a_killed_worker_s_job_is_finished_by_another(env: TestEnv) {
    let services = env.services().await;
    let worker_a = env.spawn("worker-a", WORKER_ARGS);
    let sent = canary::send(&services, QueueName::Sikka, 3_000).await.unwrap();
    // Wait until worker A holds the job, then kill it without warning.
    let held = wait_for("worker A to start the job", Duration::from_secs(20), || async {
        let job = services.queue.find(&sent.job_id).await.unwrap()?;
        (job.status == "running").then_some(job)
    })
    .await;
    let worker_a_name = held.worker.clone().expect("the job names its worker");
    worker_a.kill().await;
    assert!(services.store.canary_run(&sent.run_id).await.unwrap().unwrap().completed_at.is_none());

    // Worker B re-enqueues the orphan once A's heartbeat is older than the orphan window
    // (1 s × 2 in tests) and runs it to the end.
    let worker_b = env.spawn("worker-b", WORKER_ARGS);
    let run = wait_for("another worker to finish the job", Duration::from_secs(40), || async {
        let run = services.store.canary_run(&sent.run_id).await.unwrap()?;
        run.completed_at.is_some().then_some(run)
    })
    .await;
    assert_eq!(run.completions, 1, "killed mid-job, so it completed exactly once");
    let job = wait_for("the job to be acknowledged", Duration::from_secs(10), || async {
        let job = services.queue.find(&sent.job_id).await.unwrap()?;
        (job.status == "done").then_some(job)
    })
    .await;
    assert_ne!(job.worker.as_deref(), Some(worker_a_name.as_str()), "finished by worker B");
    // apalis-sqlite counts the killed attempt, apalis-redis does not: attempts are not
    // compared across backends (our handlers keep their own attempt history in the store).
    assert!(job.attempts >= 1, "{job:?}");
    drop(worker_b);
}
both_backends!(a_killed_worker_s_job_is_finished_by_another);

async fn sigterm_lets_in_flight_jobs_finish(env: TestEnv) {
    let services = env.services().await;
    let worker = env.spawn("worker", WORKER_ARGS);
    let sent = canary::send(&services, QueueName::Sikka, 1_500).await.unwrap();
    wait_for("the worker to start the job", Duration::from_secs(20), || async {
        let job = services.queue.find(&sent.job_id).await.unwrap()?;
        (job.status == "running").then_some(())
    })
    .await;
    worker.signal("TERM");
    let log_path = worker.log.clone();
    let code = worker.wait(Duration::from_secs(20)).await;
    let log = support::read_log(&log_path);
    assert_eq!(code, Some(0), "exit code; log:\n{log}");
    assert!(log.contains("shutdown: no new jobs"), "{log}");
    let run = services.store.canary_run(&sent.run_id).await.unwrap().unwrap();
    assert!(run.completed_at.is_some(), "the in-flight job finished before exit");
    assert_eq!(run.completions, 1);
    let job = services.queue.find(&sent.job_id).await.unwrap().unwrap();
    assert_eq!(job.status, "done", "acknowledged before exit: {job:?}");
}
both_backends!(sigterm_lets_in_flight_jobs_finish);

#[tokio::test]
async fn a_bad_setting_is_refused_by_name() {
    let Some(mut env) = TestEnv::new(support::Backend::Embedded).await else { return };
    env.set("SWITCHYARD_WORKER_CONCURRENCY", "0");
    let child = env.spawn("bad-config", &["worker"]);
    let log_path = child.log.clone();
    let code = child.wait(Duration::from_secs(10)).await;
    let log = support::read_log(&log_path);
    assert_eq!(code, Some(2), "{log}");
    assert!(log.contains("SWITCHYARD_WORKER_CONCURRENCY: must be greater than zero"), "{log}");

    let mut env = TestEnv::new(support::Backend::Embedded).await.unwrap();
    env.set("DATABASE_URL", "mysql://root:hunter2@localhost/db");
    let child = env.spawn("bad-url", &["api"]);
    let log_path = child.log.clone();
    assert_eq!(child.wait(Duration::from_secs(10)).await, Some(2));
    let log = support::read_log(&log_path);
    assert!(log.contains("DATABASE_URL: must start with"), "{log}");
    assert!(!log.contains("hunter2"), "the URL's password is never printed: {log}");
}

#[tokio::test]
async fn migrate_applies_and_is_idempotent() {
    let Some(env) = TestEnv::new(support::Backend::Embedded).await else { return };
    for _ in 0..2 {
        let child = env.spawn("migrate", &["migrate"]);
        let log_path = child.log.clone();
        assert_eq!(
            child.wait(Duration::from_secs(20)).await,
            Some(0),
            "{}",
            support::read_log(&log_path)
        );
    }
    assert!(env.dir.join("switchyard.db").exists());
}
