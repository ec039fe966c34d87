//! Queue messages: a serde-tagged, versioned enum of small structs that carry ids.
//!
//! A message is never the only copy of anything: it points at store rows, so a lost message
//! delays work and a sweep can rebuild it. Variants are never changed in place; a new shape
//! gets a new tag (`….v2`) and the old variant stays until no queue holds it.

use serde::{Deserialize, Serialize};

use crate::{
    ids::{DeliveryId, EndpointId, PidmsBatchId, WritebackId},
    queue::QueueName,
};

/// What a worker is asked to do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind")]
pub enum Job {
    /// A no-op that proves the pipeline moves; see the `canary` schedule.
    #[serde(rename = "canary.v1")]
    Canary(CanaryJob),
    /// Trims old completed and dead job records from one queue.
    #[serde(rename = "queue_vacuum.v1")]
    QueueVacuum(QueueVacuumJob),
    /// Deletes old API usage records and expired idempotency keys.
    #[serde(rename = "usage_retention.v1")]
    UsageRetention(UsageRetentionJob),
    /// Deletes old audit log entries.
    #[serde(rename = "audit_retention.v1")]
    AuditRetention(AuditRetentionJob),
    /// One attempt of a webhook delivery.
    #[serde(rename = "webhook_deliver.v1")]
    DeliverWebhook(DeliverWebhookJob),
    /// Re-enqueues deliveries that are due but not in the queue (the outbox guarantee).
    #[serde(rename = "webhook_retry_sweep.v1")]
    WebhookRetrySweep,
    /// Deletes old attempts, deliveries and payloads.
    #[serde(rename = "webhook_cleanup.v1")]
    WebhookCleanup,
    /// Disables endpoints that keep failing and announces it.
    #[serde(rename = "webhook_disable_failing.v1")]
    WebhookDisableFailing,
    /// One batch of keys checked against PIDKey.
    #[serde(rename = "pidms_batch.v1")]
    PidmsBatch(PidmsBatchJob),
    /// Starts a sync of every stored key (the `pidms-daily-sync` schedule).
    #[serde(rename = "pidms_sync_all.v1")]
    PidmsSyncAll,
    /// Re-enqueues batches left pending (the `pidms-batch-sweep` schedule).
    #[serde(rename = "pidms_batch_sweep.v1")]
    PidmsBatchSweep,
    /// Pulls `authorized_practices` and stores each practice.
    #[serde(rename = "sikka_practices_pull.v1")]
    SikkaPracticesPull,
    /// Refreshes request keys that expire soon (the `sikka-token-refresh` schedule).
    #[serde(rename = "sikka_token_refresh.v1")]
    SikkaTokenRefresh,
    /// Sends one writeback to Sikka.
    #[serde(rename = "sikka_writeback_submit.v1")]
    SikkaWritebackSubmit(SikkaWritebackJob),
    /// One check of a writeback's status.
    #[serde(rename = "sikka_writeback_poll.v1")]
    SikkaWritebackPoll(SikkaPollJob),
    /// Re-enqueues writeback steps whose job is missing.
    #[serde(rename = "sikka_writeback_sweep.v1")]
    SikkaWritebackSweep,
}

fn maintenance() -> QueueName {
    QueueName::Maintenance
}

impl Job {
    /// The queue this kind of job runs on: the one place that decides it.
    pub fn queue(&self) -> QueueName {
        match self {
            Job::Canary(c) => c.queue,
            Job::DeliverWebhook(_) => QueueName::Webhooks,
            Job::PidmsBatch(_) | Job::PidmsBatchSweep => QueueName::Pidms,
            Job::SikkaPracticesPull
            | Job::SikkaTokenRefresh
            | Job::SikkaWritebackSubmit(_)
            | Job::SikkaWritebackPoll(_)
            | Job::SikkaWritebackSweep => QueueName::Sikka,
            Job::QueueVacuum(_)
            | Job::UsageRetention(_)
            | Job::AuditRetention(_)
            | Job::WebhookRetrySweep
            | Job::WebhookCleanup
            | Job::WebhookDisableFailing
            | Job::PidmsSyncAll => QueueName::Maintenance,
        }
    }

    /// Bounded label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Job::Canary(_) => "canary",
            Job::QueueVacuum(_) => "queue_vacuum",
            Job::UsageRetention(_) => "usage_retention",
            Job::AuditRetention(_) => "audit_retention",
            Job::DeliverWebhook(_) => "webhook_deliver",
            Job::WebhookRetrySweep => "webhook_retry_sweep",
            Job::WebhookCleanup => "webhook_cleanup",
            Job::WebhookDisableFailing => "webhook_disable_failing",
            Job::PidmsBatch(_) => "pidms_batch",
            Job::PidmsSyncAll => "pidms_sync_all",
            Job::PidmsBatchSweep => "pidms_batch_sweep",
            Job::SikkaPracticesPull => "sikka_practices_pull",
            Job::SikkaTokenRefresh => "sikka_token_refresh",
            Job::SikkaWritebackSubmit(_) => "sikka_writeback_submit",
            Job::SikkaWritebackPoll(_) => "sikka_writeback_poll",
            Job::SikkaWritebackSweep => "sikka_writeback_sweep",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CanaryJob {
    /// Row in `canary_runs`.
    pub run_id: String,
    /// The queue it proves (a canary goes through each). Messages from before this field
    /// decode as the maintenance queue's: where a canary runs is decided when it is pushed.
    #[serde(default = "maintenance")]
    pub queue: QueueName,
    /// Keep the job running this long (ops use it to watch slow-job behaviour).
    #[serde(default)]
    pub hold_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueVacuumJob {
    pub queue: QueueName,
    pub retention_secs: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsageRetentionJob {
    pub retention_secs: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRetentionJob {
    pub retention_secs: u64,
    /// How long `event.published` entries are kept (one per event: by far the most).
    #[serde(default)]
    pub publish_retention_secs: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliverWebhookJob {
    pub delivery_id: DeliveryId,
    /// Lets the worker check the endpoint's room before claiming the attempt.
    pub endpoint_id: EndpointId,
    /// The attempt this message is for (1-based); the store says which attempt is next, so
    /// a stale or duplicated message does nothing.
    pub attempt: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PidmsBatchJob {
    pub batch_id: PidmsBatchId,
    pub run_id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SikkaWritebackJob {
    pub writeback_id: WritebackId,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SikkaPollJob {
    pub writeback_id: WritebackId,
    /// The check this message is for (1-based); the store counts checks, so a stale or
    /// duplicated message does nothing.
    pub check: i64,
}

/// The envelope on the wire: the job plus the times the metrics need.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub job: Job,
    /// Unix milliseconds when it was pushed.
    pub enqueued_at_ms: i64,
    /// Unix milliseconds before which it must not run. The queues schedule in whole
    /// seconds; the worker waits out the rest, so delays keep millisecond precision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before_ms: Option<i64>,
    /// Times the job failed before this message: a failed job is pushed again (on Redis)
    /// as a new message carrying its count, so its attempts add up across messages.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub failures: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl Message {
    /// When the job became due: its schedule, or its enqueue time.
    pub fn due_at_ms(&self) -> i64 {
        self.not_before_ms.unwrap_or(self.enqueued_at_ms)
    }
}

pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_format_is_tagged_and_versioned() {
        let m = Message {
            job: Job::Canary(CanaryJob {
                run_id: "01J".into(),
                queue: QueueName::Sikka,
                hold_ms: 0,
            }),
            enqueued_at_ms: 1,
            not_before_ms: None,
            failures: 0,
        };
        let json = serde_json::to_value(&m).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"job": {"kind": "canary.v1", "run_id": "01J", "queue": "sikka", "hold_ms": 0},
                               "enqueued_at_ms": 1})
        );
        let back: Message = serde_json::from_value(json).unwrap();
        assert_eq!(back, m);
    }

    #[test]
    fn older_messages_without_optional_fields_still_decode() {
        let m: Message =
            serde_json::from_str(r#"{"job":{"kind":"canary.v1","run_id":"x"},"enqueued_at_ms":5}"#)
                .unwrap();
        assert_eq!(m.due_at_ms(), 5);
        assert!(
            serde_json::from_str::<Message>(r#"{"job":{"kind":"nope.v9"},"enqueued_at_ms":5}"#)
                .is_err()
        );
    }
}
