//! A writeback's life: **submit** (claim under a lease → the Sikka call → record Sikka's id)
//! → **poll** `writeback_status` with a growing delay (2 s doubling to 30 s) until it is
//! completed or failed, or failed as stuck past its deadline → announce the end once. Each
//! step is a job that carries the step it is for (a poll carries its check number), and the
//! store only moves on a matching conditional update, so a duplicated or replayed job does
//! nothing. The sweep re-enqueues any step whose job went missing.

use std::time::Duration;

use apalis::prelude::BoxDynError;
use chrono::Utc;
use reqwest::Method;
use switchyard_shared::{
    jobs::{Job, SikkaPollJob, SikkaWritebackJob},
    services::Services,
    sikka::{Ending, SikkaPractice, SikkaWriteback, Submitted, WritebackStatus, practice_context},
    sikka::{Operation, call_for},
    telemetry,
    webhooks::events::{self, Audience},
};

use super::{
    Sikka,
    client::{WritebackCall, WritebackState},
};
use crate::handlers::Outcome;

/// The wait before check `n` (1-based): the initial delay doubling up to the cap.
pub(crate) fn poll_delay(initial: Duration, max: Duration, n: i64) -> Duration {
    let factor = 2u32.saturating_pow(n.clamp(1, 31) as u32 - 1);
    initial.saturating_mul(factor).min(max)
}

fn delays(services: &Services) -> (Duration, Duration) {
    let c = &services.config.sikka;
    (Duration::from_millis(c.poll_initial_ms), Duration::from_millis(c.poll_max_ms))
}

/// The `sikka_writeback_submit` job.
pub(crate) async fn submit(
    services: &Services,
    sikka: &Sikka,
    job: SikkaWritebackJob,
) -> Result<Outcome, BoxDynError> {
    let store = &services.store;
    let c = &services.config.sikka;
    let now = Utc::now();
    let lease = chrono::Duration::seconds((c.retry_max_secs + 2 * c.timeout_secs + 30) as i64);
    let Some(wb) = store.claim_sikka_submission(&job.writeback_id, now + lease, now).await? else {
        return Ok(Outcome::Success); // submitted already, or another worker holds it
    };
    let Some(op) = Operation::parse(&wb.operation) else {
        finish(services, &wb, Ending::Failed { error: "unknown operation", result: None }, None)
            .await?;
        return Ok(Outcome::Success);
    };
    let practice = store.sikka_practice(&wb.practice_ref).await?;
    let body: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&wb.body)?;
    let call = call_for(
        op,
        wb.target_id.as_deref(),
        &body,
        practice.as_ref().and_then(|p| p.practice_id.as_deref()),
    );
    let call = WritebackCall {
        method: Method::from_bytes(call.method.as_bytes())?,
        path: call.path,
        body: call.body,
    };
    let client = &sikka.client;
    let answer = sikka
        .tokens
        .call(&wb.practice_ref, |key| {
            let call = &call;
            async move { client.writeback(key.expose(), call).await }
        })
        .await;
    match answer {
        Ok(accepted) => match accepted.sikka_id {
            Some(sikka_id) => {
                let (initial, max) = delays(services);
                let first = poll_delay(initial, max, 1);
                let next = Utc::now() + chrono::Duration::from_std(first).unwrap_or_default();
                let submitted = Submitted::Accepted { sikka_id: &sikka_id, next_check_at: next };
                if store.record_sikka_submission(&wb.id, &submitted, Utc::now()).await? {
                    tracing::info!(writeback = %wb.id, %sikka_id, "Sikka writeback submitted");
                    let poll = SikkaPollJob { writeback_id: wb.id.clone(), check: 1 };
                    services.queue.push_after(Job::SikkaWritebackPoll(poll), first).await?;
                }
            }
            None => {
                // An update Sikka applied without a writeback to follow.
                let done = Submitted::Done { result: &accepted.message };
                if store.record_sikka_submission(&wb.id, &done, Utc::now()).await? {
                    let wb = store.sikka_writeback(&wb.id).await?.unwrap_or(wb);
                    announce(services, &wb, practice.as_ref()).await;
                }
            }
        },
        Err(error) if error.is_transient() => {
            // The agent is offline or Sikka is unavailable: try again, until the deadline.
            let (initial, max) = delays(services);
            let wait = poll_delay(initial, max, wb.submit_attempts);
            let retry_at = Utc::now() + chrono::Duration::from_std(wait).unwrap_or_default();
            if retry_at >= wb.deadline_at {
                let reason = format!("not submitted before the deadline: {error}");
                finish(services, &wb, Ending::Failed { error: &reason, result: None }, None)
                    .await?;
            } else {
                tracing::info!(writeback = %wb.id, %error, ?wait, "Sikka writeback submission deferred");
                store
                    .defer_sikka_submission(&wb.id, &error.to_string(), retry_at, Utc::now())
                    .await?;
                let again = SikkaWritebackJob { writeback_id: wb.id.clone() };
                services.queue.push_after(Job::SikkaWritebackSubmit(again), wait).await?;
                return Ok(Outcome::RetryScheduled);
            }
        }
        Err(error) => {
            finish(services, &wb, Ending::Failed { error: &error.to_string(), result: None }, None)
                .await?;
        }
    }
    Ok(Outcome::Success)
}

/// The `sikka_writeback_poll` job: check `job.check` of a submitted writeback.
pub(crate) async fn poll(
    services: &Services,
    sikka: &Sikka,
    job: SikkaPollJob,
) -> Result<Outcome, BoxDynError> {
    let store = &services.store;
    let Some(wb) = store.sikka_writeback(&job.writeback_id).await? else {
        return Ok(Outcome::Success);
    };
    let open = wb.status.awaits_check();
    if !open || wb.check_count != job.check - 1 {
        return Ok(Outcome::Success); // a stale or duplicated poll
    }
    let Some(sikka_id) = wb.sikka_id.clone() else { return Ok(Outcome::Success) };
    let client = &sikka.client;
    let state = sikka
        .tokens
        .call(&wb.practice_ref, |key| {
            let id = sikka_id.clone();
            async move { client.writeback_status(key.expose(), &id).await }
        })
        .await;
    let n = job.check;
    let error = match state {
        Ok(WritebackState::Completed(result)) => {
            finish(services, &wb, Ending::Completed { result: &result }, Some(n)).await?;
            return Ok(Outcome::Success);
        }
        Ok(WritebackState::Failed(result)) => {
            let reason = if result.is_empty() { "Sikka reported an error" } else { &result };
            finish(services, &wb, Ending::Failed { error: reason, result: Some(&result) }, Some(n))
                .await?;
            return Ok(Outcome::Success);
        }
        Ok(WritebackState::Pending) => None,
        Err(e) if e.is_transient() => Some(e),
        Err(e) => {
            finish(services, &wb, Ending::Failed { error: &e.to_string(), result: None }, Some(n))
                .await?;
            return Ok(Outcome::Success);
        }
    };
    if Utc::now() >= wb.deadline_at {
        let minutes = (wb.deadline_at - wb.created_at).num_seconds() as f64 / 60.0;
        let reason = match &error {
            Some(e) => format!("stuck: not completed within {minutes:.0} min (last check: {e})"),
            None => format!("stuck: still pending at Sikka after {minutes:.0} min"),
        };
        finish(services, &wb, Ending::Failed { error: &reason, result: None }, Some(n)).await?;
        metrics::counter!(telemetry::SIKKA_WRITEBACKS, "outcome" => "stuck").increment(1);
        return Ok(Outcome::Success);
    }
    let (initial, max) = delays(services);
    let wait = poll_delay(initial, max, n + 1);
    let next = Utc::now() + chrono::Duration::from_std(wait).unwrap_or_default();
    if store.record_sikka_check(&wb.id, n, next, Utc::now()).await? {
        let job = SikkaPollJob { writeback_id: wb.id.clone(), check: n + 1 };
        services.queue.push_after(Job::SikkaWritebackPoll(job), wait).await?;
    }
    Ok(Outcome::RetryScheduled)
}

/// Ends the writeback once and announces it. The practice (whose owner the event goes to)
/// is read first: if the store fails there, nothing has ended and the job is retried,
/// instead of a tenant's writeback being announced to the platform's endpoints.
async fn finish(
    services: &Services,
    wb: &SikkaWriteback,
    ending: Ending<'_>,
    check: Option<i64>,
) -> Result<(), BoxDynError> {
    let store = &services.store;
    let practice = store.sikka_practice(&wb.practice_ref).await?;
    if store.finish_sikka_writeback(&wb.id, ending, check, Utc::now()).await?
        && let Some(ended) = store.sikka_writeback(&wb.id).await?
    {
        announce(services, &ended, practice.as_ref()).await;
    }
    Ok(())
}

/// `sikka.writeback.completed` / `sikka.writeback.failed` with the result text; metrics.
/// `practice`: the writeback's practice as read before it ended (`None`: deleted since); a
/// practice assigned to a tenant makes the event that tenant's.
async fn announce(services: &Services, wb: &SikkaWriteback, practice: Option<&SikkaPractice>) {
    let outcome = wb.status.as_str();
    metrics::counter!(telemetry::SIKKA_WRITEBACKS, "outcome" => outcome).increment(1);
    if let Some(done) = wb.completed_at {
        let secs = (done - wb.created_at).num_milliseconds() as f64 / 1000.0;
        metrics::histogram!(telemetry::SIKKA_WRITEBACK_COMPLETION).record(secs.max(0.0));
    }
    tracing::info!(writeback = %wb.id, status = %wb.status, checks = wb.check_count, "Sikka writeback ended");
    let office = practice.and_then(|p| {
        let context = practice_context("office-id", &p.id);
        services.cipher.open_string(&context, &p.office_id_sealed).ok().map(|o| o.expose().clone())
    });
    let owner = practice.map(|p| p.tenant_id.clone()).unwrap_or_default();
    let data = serde_json::json!({
        "writeback_id": wb.id,
        "office_id": office,
        "operation": wb.operation,
        "target_id": wb.target_id,
        "status": wb.status,
        "sikka_id": wb.sikka_id,
        "result": wb.result,
        "error": wb.error,
        "check_count": wb.check_count,
        "created_at": wb.created_at,
        "completed_at": wb.completed_at,
    });
    let kind = format!("sikka.writeback.{outcome}");
    if let Err(error) =
        events::publish(services, &owner, &kind, &data, Some("system"), Audience::Subscribers).await
    {
        tracing::warn!(%error, writeback = %wb.id, "could not publish {kind}");
    }
}

/// The `sikka-writeback-sweep` job: re-enqueues the next step of every writeback whose job is
/// overdue (lost, or its worker died). Duplicates are harmless: each step is conditional.
pub(crate) async fn sweep(services: &Services) -> Result<Outcome, BoxDynError> {
    let store = &services.store;
    let now = Utc::now();
    let grace = chrono::Duration::seconds(services.config.sikka.sweep_grace_secs as i64);
    let overdue = store.overdue_sikka_writebacks(now - grace, now, 1000).await?;
    let mut jobs = Vec::with_capacity(overdue.len());
    for wb in &overdue {
        jobs.push(if wb.status == WritebackStatus::Queued {
            Job::SikkaWritebackSubmit(SikkaWritebackJob { writeback_id: wb.id.clone() })
        } else {
            Job::SikkaWritebackPoll(SikkaPollJob {
                writeback_id: wb.id.clone(),
                check: wb.check_count + 1,
            })
        });
    }
    if !jobs.is_empty() {
        tracing::info!(writebacks = jobs.len(), "Sikka writeback sweep re-enqueued overdue steps");
        services.queue.push_many(jobs).await?;
    }
    let counts = store.sikka_writeback_counts().await?;
    for status in WritebackStatus::OPEN {
        let n = counts.iter().find(|(s, _)| *s == status).map_or(0, |(_, n)| *n);
        metrics::gauge!(telemetry::SIKKA_WRITEBACKS_OPEN, "status" => status.as_str())
            .set(n as f64);
    }
    Ok(Outcome::Success)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polls_back_off_from_two_seconds_to_thirty() {
        let (i, m) = (Duration::from_secs(2), Duration::from_secs(30));
        let waits: Vec<u64> = (1..=7).map(|n| poll_delay(i, m, n).as_secs()).collect();
        assert_eq!(waits, [2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(poll_delay(i, m, 400), m);
    }
}
