//! What each schedule enqueues. The scheduler never does the work inline.

use switchyard_shared::{
    canary,
    jobs::{AuditRetentionJob, Job, QueueVacuumJob, UsageRetentionJob},
    queue::QueueName,
    schedules::ScheduleName,
    services::Services,
};

/// Enqueues the work of one tick; the error text is stored as the schedule's last error.
pub(crate) async fn enqueue(services: &Services, schedule: ScheduleName) -> Result<(), String> {
    match schedule {
        ScheduleName::QueueVacuum => {
            let retention_secs = services.config.scheduler.queue_retention_days * 86_400;
            let jobs = QueueName::ALL
                .into_iter()
                .map(|queue| Job::QueueVacuum(QueueVacuumJob { queue, retention_secs }))
                .collect();
            services.queue.push_many(jobs).await.map_err(|e| e.to_string())?;
        }
        ScheduleName::UsageRetention => {
            let retention_secs = services.config.usage_retention_days * 86_400;
            services
                .queue
                .push(Job::UsageRetention(UsageRetentionJob { retention_secs }))
                .await
                .map_err(|e| e.to_string())?;
        }
        ScheduleName::AuditRetention => {
            let retention_secs = services.config.audit_retention_days * 86_400;
            let publish_retention_secs =
                Some(services.config.audit_publish_retention_days * 86_400);
            let job = AuditRetentionJob { retention_secs, publish_retention_secs };
            push(services, Job::AuditRetention(job)).await?;
        }
        ScheduleName::WebhookRetrySweep => push(services, Job::WebhookRetrySweep).await?,
        ScheduleName::WebhookDeliveryCleanup => push(services, Job::WebhookCleanup).await?,
        ScheduleName::WebhookDisableFailing => {
            push(services, Job::WebhookDisableFailing).await?;
        }
        ScheduleName::PidmsDailySync => {
            if services.config.pidkey.api_key.is_none() {
                return Err("PIDKEY_API_KEY is not set".to_owned());
            }
            push(services, Job::PidmsSyncAll).await?;
        }
        ScheduleName::PidmsBatchSweep => push(services, Job::PidmsBatchSweep).await?,
        ScheduleName::SikkaTokenRefresh => {
            if !services.config.sikka.has_credentials() {
                return Err("SIKKA_APP_ID and SIKKA_APP_KEY are not set".to_owned());
            }
            push(services, Job::SikkaTokenRefresh).await?;
        }
        ScheduleName::SikkaWritebackSweep => push(services, Job::SikkaWritebackSweep).await?,
        ScheduleName::Canary => {
            for queue in QueueName::ALL {
                canary::send(services, queue, 0, None).await.map_err(|e| e.to_string())?;
            }
        }
    }
    Ok(())
}

/// Enqueues one job on the queue its kind runs on.
async fn push(services: &Services, job: Job) -> Result<(), String> {
    services.queue.push(job).await.map(|_| ()).map_err(|e| e.to_string())
}
