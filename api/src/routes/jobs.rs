//! Jobs by state, and bulk actions on them: list a queue's jobs in one state; retry failed or
//! dead jobs, or discard waiting ones, by id or by (queue, state). A bulk action takes at
//! most `MAX_LISTED` jobs per request and answers how many it changed; one audit entry per
//! request.

use poem_openapi::{Object, OpenApi, param::Query, payload::Json};
use switchyard_shared::{
    audit::AuditEntry,
    queue::{DiscardOutcome, JobState, MAX_LISTED, QueueName, RetryOutcome},
    services::Services,
    tenants::Owner,
};

use super::{
    ApiTags, Page, page_bounds, parse_param,
    queues::{JobView, parse_queue, record_queue_action},
};
use crate::{
    auth::scopes::{Auth, jobs_read, jobs_write_idempotent},
    problem::{ApiError, FieldError},
};

pub struct JobsApi {
    pub services: Services,
}

/// Which jobs: `ids`, or every job of `queue` in `state`.
#[derive(Object)]
struct JobSelection {
    /// Job ids (at most 1,000).
    #[oai(validator(max_items = 1000))]
    ids: Option<Vec<String>>,
    queue: Option<String>,
    state: Option<String>,
}

#[derive(Object)]
struct JobsChanged {
    /// Jobs retried (or discarded); jobs not in a state the action applies to are left.
    count: u64,
}

enum Action {
    Retry,
    Discard,
}

impl Action {
    /// The states the action applies to.
    fn states(&self) -> &'static [JobState] {
        match self {
            Self::Retry => &[JobState::Failed, JobState::Dead],
            Self::Discard => &[JobState::Pending, JobState::Scheduled, JobState::Failed],
        }
    }

    fn audit_action(&self) -> &'static str {
        match self {
            Self::Retry => "jobs.retried",
            Self::Discard => "jobs.discarded",
        }
    }
}

impl JobsApi {
    /// The ids a selection names (checked), and the queue it names if any.
    async fn selected(
        &self,
        body: &JobSelection,
        action: &Action,
    ) -> Result<(Vec<String>, Option<QueueName>), ApiError> {
        match (&body.ids, &body.queue, &body.state) {
            (Some(ids), None, None) if !ids.is_empty() => Ok((ids.clone(), None)),
            (None, Some(queue), Some(state)) => {
                let queue: QueueName = queue.parse().map_err(|e| ApiError::field("queue", e))?;
                let state: JobState = state.parse().map_err(|e| ApiError::field("state", e))?;
                if !action.states().contains(&state) {
                    let can: Vec<&str> = action.states().iter().map(|s| s.as_str()).collect();
                    return Err(ApiError::field("state", format!("one of {}", can.join(", "))));
                }
                Ok((self.services.queue.ids_in(queue, state, MAX_LISTED).await?, Some(queue)))
            }
            _ => Err(ApiError::validation(vec![FieldError {
                field: "ids".into(),
                message: "name the jobs: a non-empty `ids`, or both `queue` and `state`".into(),
            }])),
        }
    }

    async fn apply(
        &self,
        auth: &Auth,
        body: &JobSelection,
        action: Action,
    ) -> Result<Json<JobsChanged>, ApiError> {
        let (ids, queue) = self.selected(body, &action).await?;
        let mut count = 0u64;
        for id in &ids {
            let changed = match action {
                Action::Retry => self.services.queue.retry(id).await? == RetryOutcome::Requeued,
                Action::Discard => {
                    self.services.queue.discard(id).await? == DiscardOutcome::Discarded
                }
            };
            count += u64::from(changed);
        }
        if count > 0 {
            let mut audit = AuditEntry::new(
                &auth.principal().actor,
                &Owner::Platform,
                action.audit_action(),
                "queue",
            )
            .detail(format!("{count} jobs"));
            if let Some(queue) = queue {
                audit = audit.target(queue.as_str());
            }
            record_queue_action(&self.services, &audit).await;
        }
        Ok(Json(JobsChanged { count }))
    }
}

#[OpenApi(tag = "ApiTags::Jobs")]
impl JobsApi {
    /// One queue's jobs in one state (pending, scheduled, running, failed or dead), newest
    /// first, within the newest 10,000. Scope: `jobs:read`.
    #[oai(path = "/jobs", method = "get", operation_id = "listJobs", transform = "jobs_read")]
    async fn list(
        &self,
        _auth: Auth,
        queue: Query<Option<String>>,
        state: Query<Option<String>>,
        page: Query<Option<i64>>,
        page_size: Query<Option<i64>>,
    ) -> Result<Json<Page<JobView>>, ApiError> {
        let queue = match queue.0.as_deref() {
            Some(q) => parse_queue(q).map_err(|_| ApiError::field("queue", "no such queue"))?,
            None => return Err(ApiError::field("queue", "is required")),
        };
        let state = parse_param::<JobState>("state", state.0.as_deref())?
            .ok_or_else(|| ApiError::field("state", "is required"))?;
        let (page, page_size, offset) = page_bounds(page.0, page_size.0)?;
        if (offset + page_size) as usize > MAX_LISTED {
            return Err(ApiError::field("page", format!("lists reach the newest {MAX_LISTED}")));
        }
        let (total, jobs) =
            self.services.queue.list(queue, state, offset as usize, page_size as usize).await?;
        let items = jobs.into_iter().map(Into::into).collect();
        Ok(Json(Page { total: total as i64, page, page_size, items }))
    }

    /// Retry failed or dead jobs now: `{"ids": […]}` or `{"queue", "state": "failed" |
    /// "dead"}` (at most 10,000 per request: repeat for more). Answers how many were
    /// retried. Scope: `jobs:write`; honours `Idempotency-Key`.
    #[oai(
        path = "/jobs/retry",
        method = "post",
        operation_id = "retryJobs",
        transform = "jobs_write_idempotent"
    )]
    async fn retry(
        &self,
        auth: Auth,
        body: Json<JobSelection>,
    ) -> Result<Json<JobsChanged>, ApiError> {
        self.apply(&auth, &body, Action::Retry).await
    }

    /// Discard waiting jobs (pending, scheduled, or failed awaiting their retry): they go to
    /// dead and will not run unless retried. `{"ids": […]}` or `{"queue", "state"}` (at most
    /// 10,000 per request). A running job is left alone. Answers how many were discarded.
    /// Scope: `jobs:write`; honours `Idempotency-Key`.
    #[oai(
        path = "/jobs/discard",
        method = "post",
        operation_id = "discardJobs",
        transform = "jobs_write_idempotent"
    )]
    async fn discard(
        &self,
        auth: Auth,
        body: Json<JobSelection>,
    ) -> Result<Json<JobsChanged>, ApiError> {
        self.apply(&auth, &body, Action::Discard).await
    }
}
