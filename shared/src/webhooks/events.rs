//! Publishing events: each event and one delivery per subscribed endpoint are written in one
//! transaction, then the deliveries are enqueued (write first, enqueue second: if the push
//! is lost, `webhook-retry-sweep` finds the rows and enqueues them again). The API and the
//! workers (Switchyard's own `pidms.*`, `sikka.*`, `webhook.*` events) use this one path.
//!
//! Group commit: publishes from concurrent requests queue up for one [`Publisher`] task,
//! which writes all that are waiting in one transaction (one statement on PostgreSQL) and
//! answers them once it is committed; their deliveries' first attempts are enqueued behind
//! it by the [`pusher`](super::pusher), groups written meanwhile in one push. A request's
//! events are always in the same transaction (a batch is all-or-nothing); if a shared write
//! fails, each request is written again on its own, so one request's failure is not
//! another's.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::{
    audit::{Actor, AuditEntry},
    ids::{DeliveryId, EndpointId, EventId},
    jobs::{DeliverWebhookJob, Job},
    queue::Queue,
    services::Services,
    store::{Store, StoreError},
    telemetry,
    tenants::Owner,
    webhooks::pusher::Pusher,
    webhooks::{self, Inserted, NewDelivery, NewEvent, RetrySchedule, Subscriptions},
};

/// Events written together at most (requests keep their events together beyond it).
const MAX_GROUP_EVENTS: usize = 500;
/// Group writes in flight at once: one group is gathered while another is written.
const WRITERS: usize = 2;

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("event type {0:?} is not dot-separated letters, digits and underscores")]
    InvalidType(String),
    #[error("the payload is {size} bytes; the limit is {limit}")]
    TooLarge { size: usize, limit: usize },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the publisher stopped")]
    Stopped,
}

#[derive(Debug, Clone)]
pub struct Published {
    pub event_id: String,
    pub delivery_ids: Vec<String>,
}

/// Where an event goes: every enabled endpoint subscribed to its type, or one endpoint
/// (`POST /webhooks/{id}/test`).
#[derive(Debug, Clone, Copy)]
pub enum Audience<'a> {
    Subscribers,
    Endpoint(&'a str),
}

/// An event checked and rendered, ready to be written.
#[derive(Debug, Clone)]
pub struct Prepared {
    event_type: String,
    payload: String,
    source: Option<String>,
    /// Whose event it is: it reaches only this owner's endpoints.
    owner: Owner,
    /// `None`: the subscribers.
    endpoint: Option<String>,
    created_at: chrono::DateTime<chrono::Utc>,
    /// Who asked, for the audit entry written with the event (none for Switchyard's own).
    audit: Option<PublishAudit>,
}

/// An API publish's audit entry, less the event id (chosen when it is written).
#[derive(Debug, Clone)]
struct PublishAudit {
    actor: Actor,
    action: &'static str,
    /// What the entry is about; `None`: the event itself.
    target: Option<(&'static str, String)>,
}

impl Prepared {
    /// Records the publish in the audit log as `action` by `actor`, in the event's own
    /// transaction, about the event (or about `target`, a type and id).
    pub fn audited(
        mut self,
        actor: &Actor,
        action: &'static str,
        target: Option<(&'static str, &str)>,
    ) -> Self {
        self.audit = Some(PublishAudit {
            actor: actor.clone(),
            action,
            target: target.map(|(t, id)| (t, id.to_owned())),
        });
        self
    }

    fn audit_entry(&self, event_id: &str) -> Option<AuditEntry> {
        let a = self.audit.as_ref()?;
        let (target_type, target_id) = match &a.target {
            Some((t, id)) => (*t, id.as_str()),
            None => ("event", event_id),
        };
        let mut entry = AuditEntry::new(&a.actor, &self.owner, a.action, target_type)
            .target(target_id)
            .changed(&[("event_type", true)]);
        entry.at = self.created_at;
        Some(entry)
    }
}

/// Checks an event (type, payload size) and renders its payload.
pub fn prepare(
    services: &Services,
    owner: &Owner,
    event_type: &str,
    data: &serde_json::Value,
    source: Option<&str>,
    audience: Audience<'_>,
) -> Result<Prepared, PublishError> {
    if !webhooks::valid_event_type(event_type) {
        return Err(PublishError::InvalidType(event_type.to_owned()));
    }
    let now = chrono::Utc::now();
    let payload = webhooks::payload(event_type, now, data);
    let limit = services.config.webhooks.max_payload_bytes;
    if payload.len() > limit {
        return Err(PublishError::TooLarge { size: payload.len(), limit });
    }
    Ok(Prepared {
        event_type: event_type.to_owned(),
        payload,
        source: source.map(str::to_owned),
        owner: owner.clone(),
        endpoint: match audience {
            Audience::Subscribers => None,
            Audience::Endpoint(id) => Some(id.to_owned()),
        },
        created_at: now,
        audit: None,
    })
}

/// Publishes one event of `owner`.
#[crate::boxed]
pub async fn publish<'a>(
    services: &Services,
    owner: &Owner,
    // One named lifetime for `event_type` and `audience`: #[boxed] bounds the lifetimes of references.
    event_type: &'a str,
    data: &serde_json::Value,
    source: Option<&str>,
    audience: Audience<'a>,
) -> Result<Published, PublishError> {
    publish_one(services, prepare(services, owner, event_type, data, source, audience)?).await
}

/// Publishes one prepared event.
#[crate::boxed]
pub async fn publish_one(services: &Services, event: Prepared) -> Result<Published, PublishError> {
    let mut published = services.publisher.publish(vec![event]).await?;
    published.pop().ok_or(PublishError::Stopped)
}

type Answer = Result<Vec<Published>, PublishError>;

struct Request {
    events: Vec<Prepared>,
    done: oneshot::Sender<Answer>,
}

/// The handle to this process' group-commit publisher.
#[derive(Clone, Debug)]
pub struct Publisher {
    tx: mpsc::Sender<Request>,
    pusher: Pusher,
}

impl Publisher {
    /// Starts the publisher task of a process.
    pub fn start(store: Store, queue: Queue, retry_schedule: &str) -> Self {
        let max_attempts =
            RetrySchedule::parse(retry_schedule).map(|s| s.max_attempts()).unwrap_or(1);
        let (tx, rx) = mpsc::channel(4_096);
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        let pusher = Pusher::start(queue);
        for _ in 0..WRITERS {
            let writer = Writer {
                store: store.clone(),
                pusher: pusher.clone(),
                max_attempts: i64::from(max_attempts),
                subscriptions: None,
            };
            tokio::spawn(writer.run(Arc::clone(&rx)));
        }
        Self { tx, pusher }
    }

    /// Waits (at most `within`) until the deliveries of every publish answered so far have
    /// been handed to the queue; for a process stopping. Returns whether they all were
    /// (any left over are enqueued by the retry sweep).
    #[crate::boxed]
    pub async fn flushed(&self, within: std::time::Duration) -> bool {
        self.pusher.flushed(within).await
    }

    /// Writes `events` together (all or none) and enqueues their deliveries; answers each
    /// event's id and deliveries, in order.
    #[crate::boxed]
    pub async fn publish(&self, events: Vec<Prepared>) -> Answer {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let (done, answer) = oneshot::channel();
        self.tx.send(Request { events, done }).await.map_err(|_| PublishError::Stopped)?;
        answer.await.map_err(|_| PublishError::Stopped)?
    }
}

struct Writer {
    store: Store,
    pusher: Pusher,
    max_attempts: i64,
    /// The subscriptions last read (their version, their patterns), kept while the version
    /// holds: each write checks it.
    subscriptions: Option<(Option<i64>, Patterns)>,
}

/// An endpoint's subscription patterns, split, and whose endpoint it is.
type Patterns = Vec<(String, Owner, Vec<String>)>;

/// One event as written: ids chosen, audience resolved.
struct Planned {
    event_id: String,
    deliveries: Vec<NewDelivery>,
}

/// Every enabled endpoint's patterns, split once per read of the subscriptions.
fn patterns(subs: &Subscriptions) -> Patterns {
    subs.endpoints
        .iter()
        .map(|s| {
            let patterns = s.event_types.split_whitespace().map(str::to_owned);
            (s.endpoint_id.to_string(), s.tenant_id.clone(), patterns.collect())
        })
        .collect()
}

/// Chooses each event's id and its deliveries' ids and endpoints (its audience: the owner's
/// endpoints subscribed to its type, or the one endpoint it names).
fn plan(requests: &[&Request], patterns: &Patterns) -> Vec<Vec<Planned>> {
    requests
        .iter()
        .map(|request| {
            request
                .events
                .iter()
                .map(|event| {
                    let endpoints: Vec<&str> = match &event.endpoint {
                        Some(id) => vec![id.as_str()],
                        None => patterns
                            .iter()
                            .filter(|(_, owner, p)| {
                                *owner == event.owner && webhooks::subscribed(p, &event.event_type)
                            })
                            .map(|(id, _, _)| id.as_str())
                            .collect(),
                    };
                    // Monotonic ids: deliveries sort in the order they were published.
                    let event_id = EventId::generate().into_string();
                    let deliveries = endpoints
                        .into_iter()
                        .map(|e| NewDelivery {
                            id: DeliveryId::generate(),
                            endpoint_id: EndpointId::from(e.to_owned()),
                        })
                        .collect();
                    Planned { event_id, deliveries }
                })
                .collect()
        })
        .collect()
}

impl Writer {
    /// Takes what is waiting (a group), writes it, and again; the receiver is held only
    /// while a group is taken, so another writer can gather the next one meanwhile.
    async fn run(mut self, rx: Arc<tokio::sync::Mutex<mpsc::Receiver<Request>>>) {
        let mut group: Vec<Request> = Vec::new();
        loop {
            let events = {
                let mut rx = rx.lock().await;
                let Some(first) = rx.recv().await else { return };
                let mut events = first.events.len();
                group.push(first);
                while events < MAX_GROUP_EVENTS {
                    match rx.try_recv() {
                        Ok(next) => {
                            events += next.events.len();
                            group.push(next);
                        }
                        Err(_) => break,
                    }
                }
                events
            };
            metrics::histogram!(telemetry::WEBHOOK_PUBLISH_BATCH).record(events as f64);
            if group.len() == 1 {
                let request = group.remove(0);
                self.write_alone(request).await;
                continue;
            }
            let refs: Vec<&Request> = group.iter().collect();
            match self.write(&refs).await {
                Ok(answers) => {
                    for (request, answer) in group.drain(..).zip(answers) {
                        let _ = request.done.send(Ok(answer));
                    }
                }
                Err(error) => {
                    tracing::debug!(%error, requests = group.len(), "group write failed; writing each request alone");
                    for request in std::mem::take(&mut group) {
                        self.write_alone(request).await;
                    }
                }
            }
        }
    }

    async fn write_alone(&mut self, request: Request) {
        let answer = self.write(&[&request]).await.map(|mut a| a.remove(0));
        let _ = request.done.send(answer.map_err(PublishError::from));
    }

    /// Writes the events of `requests` in one transaction and hands their deliveries' first
    /// attempts to the pusher; answers per request, per event. Fan-out follows the
    /// subscriptions kept from an earlier write while the store says they are still current;
    /// when they changed meanwhile, nothing was written: they are read again and the group planned and written
    /// once more (unchecked: as current as a read just before the write can be).
    async fn write(&mut self, requests: &[&Request]) -> Result<Vec<Vec<Published>>, StoreError> {
        let fan_out = requests.iter().flat_map(|r| &r.events).any(|e| e.endpoint.is_none());
        let mut checked = true;
        let plans = loop {
            // Without a version (its row gone) nothing can be checked: read every time.
            if fan_out && !matches!(self.subscriptions, Some((Some(_), _))) {
                let subs = self.store.subscriptions().await?;
                self.subscriptions = Some((subs.version, patterns(&subs)));
            }
            let (plans, version) = match &self.subscriptions {
                Some((version, patterns)) if fan_out => {
                    (plan(requests, patterns), version.filter(|_| checked))
                }
                _ => (plan(requests, &Vec::new()), None),
            };
            match self.insert(requests, &plans, version).await? {
                Inserted::Written => break plans,
                Inserted::SubscriptionsChanged => {
                    metrics::counter!(telemetry::WEBHOOK_SUBSCRIPTIONS_REREAD).increment(1);
                    self.subscriptions = None;
                    checked = false;
                }
            }
        };
        self.pusher.hand(first_attempts(&plans)).await;
        for event in requests.iter().flat_map(|r| &r.events) {
            let source = if event.source.as_deref() == Some("system") { "system" } else { "api" };
            metrics::counter!(telemetry::WEBHOOK_EVENTS, "source" => source).increment(1);
        }
        Ok(plans
            .into_iter()
            .map(|planned| {
                planned
                    .into_iter()
                    .map(|p| Published {
                        event_id: p.event_id,
                        delivery_ids: p
                            .deliveries
                            .into_iter()
                            .map(|d| d.id.into_string())
                            .collect(),
                    })
                    .collect()
            })
            .collect())
    }

    /// Writes the planned events, their deliveries and audit entries (while the
    /// subscriptions are at `version`, if given).
    async fn insert(
        &self,
        requests: &[&Request],
        plans: &[Vec<Planned>],
        version: Option<i64>,
    ) -> Result<Inserted, StoreError> {
        let rows: Vec<NewEvent<'_>> = requests
            .iter()
            .zip(plans)
            .flat_map(|(request, planned)| request.events.iter().zip(planned))
            .map(|(event, plan)| NewEvent {
                event_id: &plan.event_id,
                event_type: &event.event_type,
                payload: &event.payload,
                source: event.source.as_deref(),
                tenant_id: &event.owner,
                deliveries: &plan.deliveries,
                max_attempts: self.max_attempts,
                now: event.created_at,
            })
            .collect();
        let audits: Vec<AuditEntry> = requests
            .iter()
            .zip(plans)
            .flat_map(|(request, planned)| request.events.iter().zip(planned))
            .filter_map(|(event, plan)| event.audit_entry(&plan.event_id))
            .collect();
        self.store.insert_events_at(&rows, &audits, version).await
    }
}

/// The first attempts of the written deliveries, as queue jobs.
fn first_attempts(plans: &[Vec<Planned>]) -> Vec<Job> {
    plans
        .iter()
        .flatten()
        .flat_map(|plan| &plan.deliveries)
        .map(|d| {
            Job::DeliverWebhook(DeliverWebhookJob {
                delivery_id: d.id.clone(),
                endpoint_id: d.endpoint_id.clone(),
                attempt: 1,
            })
        })
        .collect()
}
