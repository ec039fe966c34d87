//! The store's contract for webhook deliveries, on both backends: a claim taken once and
//! written in place, a read-back shared between workers, an attempt recorded once.

use chrono::{DateTime, Duration, SubsecRound, Utc};
use switchyard_shared::{
    ids::TenantId,
    store::Store,
    tenants::Owner,
    webhooks::events::{self, Audience},
    webhooks::{AttemptOutcome, AttemptRecord, DeliveryClaim, DeliveryStatus, SUCCESS_REFRESH},
    webhooks::{EndpointPatch, Inserted, NewDelivery, NewEvent},
};

use crate::store_contract::{a_delivery_to, an_endpoint, new_endpoint};
use crate::support::{self, TestEnv};

/// An endpoint and one event with one delivery to it; returns the delivery id.
async fn one_delivery(store: &Store, max_attempts: i64) -> String {
    let ep = an_endpoint(store).await;
    a_delivery_to(store, &ep, max_attempts).await
}

fn record(
    delivery: &str,
    endpoint: &str,
    n: i64,
    status: DeliveryStatus,
    code: i32,
) -> AttemptRecord {
    AttemptRecord {
        delivery_id: delivery.into(),
        endpoint_id: endpoint.into(),
        n,
        at: Utc::now(),
        status_code: Some(code),
        duration_ms: 1.5,
        outcome: AttemptOutcome::HttpStatus,
        error: (code >= 300).then(|| format!("HTTP {code}")),
        response_body: Some("ok".into()),
        delivery_status: status,
        next_attempt_at: (status == DeliveryStatus::Retrying).then(Utc::now),
        success: (200..300).contains(&code),
        gone: false,
    }
}

both_backends!(an_attempt_is_claimed_once_and_a_refused_claim_says_why);
async fn an_attempt_is_claimed_once_and_a_refused_claim_says_why(env: TestEnv) {
    let store = env.services().await.store;
    let id = one_delivery(&store, 3).await;
    let now = Utc::now();
    let lease = now + Duration::seconds(30);

    let first = store.claim_deliveries(&[(id.as_str().into(), 1)], lease, now).await.unwrap();
    assert_eq!(first.len(), 1, "a pending delivery's first attempt is claimable");
    assert_eq!(first[0].payload.as_deref(), Some(r#"{"n":1}"#));
    assert_eq!(store.delivery(&id).await.unwrap().unwrap().status, DeliveryStatus::Delivering);

    // A second worker with the same message: nothing to take, and told the lease is live.
    assert!(
        store.claim_deliveries(&[(id.as_str().into(), 1)], lease, now).await.unwrap().is_empty()
    );
    match store.unclaimed(&id, 1).await.unwrap() {
        DeliveryClaim::Held { until } => assert!((until - lease).num_milliseconds().abs() < 1000),
        other => panic!("expected Held, got {other:?}"),
    }
    // A message for an attempt that is not next is stale, never held.
    assert!(
        store.claim_deliveries(&[(id.as_str().into(), 2)], lease, now).await.unwrap().is_empty()
    );
    assert!(matches!(store.unclaimed(&id, 2).await.unwrap(), DeliveryClaim::Stale));

    // The worker died: once its lease has run out the same attempt is claimable again.
    let later = lease + Duration::seconds(1);
    let again = store
        .claim_deliveries(&[(id.as_str().into(), 1)], later + Duration::seconds(30), later)
        .await
        .unwrap();
    assert_eq!(again.len(), 1, "an expired lease is taken over");
}

both_backends!(a_claim_is_a_lease_written_in_place);
/// A claim writes the lease alone (migration 0015): the row stays pending as stored, shows as
/// delivering, the sweeps pass over it while the lease lives and find it once it has run out,
/// and on PostgreSQL every claim is a HOT update (no index entry written).
async fn a_claim_is_a_lease_written_in_place(env: TestEnv) {
    let store = env.services().await.store;
    let ep = an_endpoint(&store).await;
    let mut ids = Vec::new();
    for _ in 0..8 {
        ids.push(a_delivery_to(&store, &ep, 3).await);
    }
    let before = store.delivery(&ids[0]).await.unwrap().unwrap();
    let now = Utc::now() + Duration::seconds(1);
    let lease = now + Duration::seconds(30);
    let wanted: Vec<_> = ids[..4].iter().map(|id| (id.as_str().into(), 1)).collect();
    assert_eq!(store.claim_deliveries(&wanted, lease, now).await.unwrap().len(), 4);
    assert_eq!(store.claim_due_of(&ep, None, 4, lease, now).await.unwrap().len(), 4);

    let shown = store.delivery(&ids[0]).await.unwrap().unwrap();
    assert_eq!(shown.status, DeliveryStatus::Delivering);
    assert_eq!(shown.updated_at, before.updated_at, "a claim changes no indexed column");
    let stored: String = switchyard_shared::on_pool!(&store, pool => sqlx::query_scalar(
        "SELECT status FROM webhook_deliveries WHERE id = $1").bind(&ids[0]).fetch_one(pool).await)
    .unwrap();
    assert_eq!(stored, "pending");
    let (total, delivering) =
        store.list_deliveries(&ep, Some(DeliveryStatus::Delivering), 0, 50).await.unwrap();
    assert_eq!((total, delivering.len()), (8, 8), "the status filter sees the derived status");
    let (pending, _) =
        store.list_deliveries(&ep, Some(DeliveryStatus::Pending), 0, 50).await.unwrap();
    assert_eq!(pending, 0);

    // The sweep: nothing while the leases live; all eight once they have run out.
    assert!(store.overdue_deliveries(now, 100).await.unwrap().is_empty());
    let after = lease + Duration::seconds(1);
    assert_eq!(store.overdue_deliveries(after, 100).await.unwrap().len(), 8);

    if let Store::Postgres(pool, _) = &store {
        // Statistics reach the view when the claiming connections flush them (within a
        // second or so of going idle): wait for all eight updates to be counted.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        let (updated, hot) = loop {
            let counts: (i64, i64) = sqlx::query_as(
                "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables
                 WHERE relname = 'webhook_deliveries'",
            )
            .fetch_one(pool)
            .await
            .unwrap();
            if counts.0 >= 8 || std::time::Instant::now() > deadline {
                break counts;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        };
        assert_eq!(updated, 8, "eight claims, nothing else updated the table");
        assert_eq!(hot, 8, "every claim a HOT update");
    }
}

both_backends!(a_read_back_claims_each_due_delivery_once_oldest_first);
async fn a_read_back_claims_each_due_delivery_once_oldest_first(env: TestEnv) {
    let store = env.services().await.store;
    let ep = an_endpoint(&store).await;
    let mut ids = Vec::new();
    for _ in 0..6 {
        ids.push(a_delivery_to(&store, &ep, 3).await);
    }
    ids.sort();
    let now = Utc::now() + Duration::seconds(1);
    let lease = now + Duration::seconds(60);
    let taken = |claims: &[switchyard_shared::webhooks::ReadBackClaim]| -> Vec<String> {
        claims.iter().map(|c| c.claimed.id.to_string()).collect()
    };

    // Two workers read the same backlog back at once: each row goes to one of them.
    let (a, b) = tokio::join!(
        store.claim_due_of(&ep, None, 2, lease, now),
        store.claim_due_of(&ep, None, 2, lease, now)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    let mut both = [taken(&a), taken(&b)].concat();
    both.sort();
    both.dedup();
    assert_eq!(both.len(), a.len() + b.len(), "no row claimed twice: {a:?} {b:?}");
    assert!(a.iter().chain(&b).all(|c| c.attempt == 1 && c.claimed.payload.is_some()));
    let first = taken(&a);
    assert!(first.windows(2).all(|w| w[0] < w[1]), "oldest first, in id order");

    // After a cursor: only later rows, and claimed ones (a live lease) are skipped.
    let last = ids[3].clone();
    let rest = store.claim_due_of(&ep, Some(&last), 10, lease, now).await.unwrap();
    assert_eq!(taken(&rest), ids[4..].to_vec());
    let all_due = store.claim_due_of(&ep, None, 10, lease, now).await.unwrap();
    let claimed_before: usize = a.len() + b.len() + rest.len();
    assert_eq!(all_due.len(), ids.len() - claimed_before, "the rest, nothing claimed twice");
    let d = store.delivery(&ids[4]).await.unwrap().unwrap();
    assert_eq!(d.status, DeliveryStatus::Delivering);

    // A claim given back is due again at once, for any worker, at the same attempt.
    store.release_claim(&ids[4], 1).await.unwrap();
    assert_eq!(store.delivery(&ids[4]).await.unwrap().unwrap().status, DeliveryStatus::Pending);
    let again = store.claim_due_of(&ep, None, 10, lease, now).await.unwrap();
    assert_eq!(taken(&again), vec![ids[4].clone()]);
    // Releasing a stale attempt changes nothing.
    store.release_claim(&ids[4], 2).await.unwrap();
    assert_eq!(store.delivery(&ids[4]).await.unwrap().unwrap().status, DeliveryStatus::Delivering);

    // The worker died: once the leases run out the whole backlog is claimable again.
    let later = lease + Duration::seconds(1);
    let taken_over = store.claim_due_of(&ep, None, 10, later + Duration::seconds(60), later).await;
    assert_eq!(taken(&taken_over.unwrap()), ids, "expired leases are taken over, oldest first");
}

both_backends!(an_attempt_is_recorded_once);
async fn an_attempt_is_recorded_once(env: TestEnv) {
    let store = env.services().await.store;
    let id = one_delivery(&store, 3).await;
    let ep = store.delivery(&id).await.unwrap().unwrap().endpoint_id;
    let now = Utc::now();
    store
        .claim_deliveries(&[(id.as_str().into(), 1)], now + Duration::seconds(30), now)
        .await
        .unwrap();

    store.record_attempts(&[record(&id, &ep, 1, DeliveryStatus::Retrying, 503)]).await.unwrap();
    // The same attempt recorded twice (a worker's retry of its record): still one attempt,
    // and the second record's state (here: a different outcome) does not overwrite the first.
    store.record_attempts(&[record(&id, &ep, 1, DeliveryStatus::Delivered, 200)]).await.unwrap();
    let d = store.delivery(&id).await.unwrap().unwrap();
    assert_eq!(
        (d.attempts, d.status, d.last_status_code),
        (1, DeliveryStatus::Retrying, Some(503))
    );
    let attempts = store.delivery_attempts(&id).await.unwrap();
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].outcome, AttemptOutcome::HttpStatus);

    let now = Utc::now();
    store
        .claim_deliveries(&[(id.as_str().into(), 2)], now + Duration::seconds(30), now)
        .await
        .unwrap();
    store.record_attempts(&[record(&id, &ep, 2, DeliveryStatus::Delivered, 204)]).await.unwrap();
    let d = store.delivery(&id).await.unwrap().unwrap();
    assert_eq!((d.attempts, d.status), (2, DeliveryStatus::Delivered));
    assert!(d.delivered_at.is_some());
    let endpoint = store.endpoint(&ep).await.unwrap().unwrap();
    assert_eq!(endpoint.failure_count, 0, "a success resets the endpoint's failures");
    assert!(endpoint.last_success_at.is_some());
    // A delivered delivery is never claimed again.
    let now = Utc::now();
    assert!(
        store
            .claim_deliveries(&[(id.as_str().into(), 3)], now + Duration::seconds(30), now)
            .await
            .unwrap()
            .is_empty()
    );
}

/// One new delivery to `endpoint` and its first attempt at `at`: answered `code`.
async fn attempted_at(
    store: &Store,
    endpoint: &str,
    at: DateTime<Utc>,
    code: i32,
) -> AttemptRecord {
    let id = a_delivery_to(store, endpoint, 3).await;
    let status = if (200..300).contains(&code) {
        DeliveryStatus::Delivered
    } else {
        DeliveryStatus::Retrying
    };
    AttemptRecord { at, ..record(&id, endpoint, 1, status, code) }
}

both_backends!(a_run_of_successes_leaves_a_healthy_endpoint_row_alone);
/// Successes of an endpoint with no failures rewrite its row at most once per
/// `SUCCESS_REFRESH`; a failure, and the success that ends failures, are written at once.
async fn a_run_of_successes_leaves_a_healthy_endpoint_row_alone(env: TestEnv) {
    assert_eq!(SUCCESS_REFRESH, Duration::seconds(1), "the steps below assume one second");
    let store = env.services().await.store;
    let ep = an_endpoint(&store).await;
    let t0 = Utc::now().trunc_subsecs(3);
    let at = |ms: i64| t0 + Duration::milliseconds(ms);
    let health = async || {
        let e = store.endpoint(&ep).await.unwrap().unwrap();
        (e.failure_count, e.last_success_at, e.last_failure_at)
    };
    let record = async |batch: Vec<(i64, i32)>| {
        let mut records = Vec::new();
        for (ms, code) in batch {
            records.push(attempted_at(&store, &ep, at(ms), code).await);
        }
        store.record_attempts(&records).await.unwrap();
    };

    record(vec![(0, 200)]).await;
    assert_eq!(health().await, (0, Some(at(0)), None), "the first success is written");
    record(vec![(400, 200), (500, 204)]).await;
    assert_eq!(health().await, (0, Some(at(0)), None), "successes within the refresh: no write");
    record(vec![(1_500, 200)]).await;
    assert_eq!(health().await, (0, Some(at(1_500)), None), "a second later it is refreshed");
    record(vec![(1_600, 503)]).await;
    assert_eq!(health().await, (1, Some(at(1_500)), Some(at(1_600))), "a failure is written");
    record(vec![(1_700, 200)]).await;
    assert_eq!(
        health().await,
        (0, Some(at(1_700)), Some(at(1_600))),
        "the success after a failure resets the count at once"
    );
    record(vec![(1_800, 500), (1_900, 200)]).await;
    assert_eq!(
        health().await,
        (0, Some(at(1_900)), Some(at(1_800))),
        "a batch with a failure in it is written, though it ends in a success"
    );
    // Every attempt's delivery was recorded, whatever happened to the endpoint row.
    let counted = async |status| store.list_deliveries(&ep, Some(status), 0, 100).await.unwrap().0;
    assert_eq!(
        (counted(DeliveryStatus::Delivered).await, counted(DeliveryStatus::Retrying).await),
        (6, 2)
    );
}

both_backends!(busy_paths_and_plain_reads_share_a_small_pool);
/// The busy paths keep a few PostgreSQL connections out of the pool between uses (sqlx pings
/// each one it takes back). Kept ones must never starve anyone: with the test pool of five
/// and far more callers than connections, claims, publishes and plain reads all get theirs
/// (a first cut kept up to eight, and callers waiting in the pool timed out). Closing the
/// store afterwards does not wait for a kept one.
async fn busy_paths_and_plain_reads_share_a_small_pool(env: TestEnv) {
    let store = env.services().await.store;
    let ep = an_endpoint(&store).await;
    let mut work = tokio::task::JoinSet::new();
    for _ in 0..40 {
        let (store, ep) = (store.clone(), ep.clone());
        work.spawn(async move {
            let id = a_delivery_to(&store, &ep, 3).await;
            let until = Utc::now() + Duration::seconds(30);
            let wanted = [(id.clone().into(), 1)];
            let claimed = store.claim_deliveries(&wanted, until, Utc::now()).await.unwrap();
            assert_eq!(claimed.len(), 1, "claimed once");
            store.unclaimed(&id, 1).await.unwrap();
        });
    }
    while let Some(done) = work.join_next().await {
        done.unwrap();
    }
    // One more claim while the pool is quiet leaves its connection kept; closing the store
    // must not wait for it (the pool's close waits for every connection to come back).
    let id = a_delivery_to(&store, &ep, 3).await;
    let until = Utc::now() + Duration::seconds(30);
    store.claim_deliveries(&[(id.into(), 1)], until, Utc::now()).await.unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(10), store.close())
        .await
        .expect("the store closes with a connection kept");
}

both_backends!(recorders_sharing_endpoints_wait_for_each_other_without_deadlock);
/// Two workers record failures for the same endpoints at once, their batches in opposite
/// orders: both change every endpoint's health, so both lock every endpoint row. One order
/// for all recorders means one waits for the other; any other would deadlock (PostgreSQL
/// then aborts one with 40P01 and the records fail). Each delivery's attempt and each
/// endpoint's failure count come out exact.
async fn recorders_sharing_endpoints_wait_for_each_other_without_deadlock(env: TestEnv) {
    let store = env.services().await.store;
    let mut endpoints = Vec::new();
    for _ in 0..4 {
        endpoints.push(an_endpoint(&store).await);
    }
    let rounds = 15;
    for _ in 0..rounds {
        let mut batches: [Vec<AttemptRecord>; 2] = [Vec::new(), Vec::new()];
        for (b, batch) in batches.iter_mut().enumerate() {
            let order: Vec<&String> =
                if b == 0 { endpoints.iter().collect() } else { endpoints.iter().rev().collect() };
            for ep in order {
                let id = a_delivery_to(&store, ep, 5).await;
                batch.push(record(&id, ep, 1, DeliveryStatus::Retrying, 500));
            }
        }
        let [a, b] = &batches;
        let (ra, rb) = tokio::join!(store.record_attempts(a), store.record_attempts(b));
        ra.unwrap();
        rb.unwrap();
        for r in a.iter().chain(b) {
            let d = store.delivery(&r.delivery_id).await.unwrap().unwrap();
            assert_eq!((d.attempts, d.status), (1, DeliveryStatus::Retrying), "{}", r.delivery_id);
        }
    }
    for ep in &endpoints {
        let e = store.endpoint(ep).await.unwrap().unwrap();
        assert_eq!(e.failure_count, 2 * rounds, "{ep}: one failure per batch per round");
    }
}

both_backends!(a_publish_checks_the_subscriptions_it_planned_with);
/// A publish group planned with subscriptions read at one version is written only while the
/// store is still at it: after a change to an endpoint's subscription, nothing of it is
/// written; a health update changes no subscription and leaves the version alone.
async fn a_publish_checks_the_subscriptions_it_planned_with(env: TestEnv) {
    let store = env.services().await.store;
    let owner = Owner::Tenant(TenantId::generate());
    let ep = support::unique("ep_");
    store
        .insert_endpoint(&new_endpoint(&ep, &owner), Utc::now(), &support::test_audit())
        .await
        .unwrap();
    let read = store.subscriptions().await.unwrap();
    assert!(read.endpoints.iter().any(|s| s.endpoint_id.as_str() == ep));
    let first = read.version.expect("a version");
    let publish_at = |version: Option<i64>| {
        let (store, ep, owner) = (store.clone(), ep.clone(), owner.clone());
        async move {
            let (event, delivery) = (support::unique("evt_"), support::unique("msg_"));
            let deliveries =
                [NewDelivery { id: delivery.clone().into(), endpoint_id: ep.as_str().into() }];
            let row = NewEvent {
                event_id: &event,
                event_type: "contract.test",
                payload: "{}",
                source: None,
                tenant_id: &owner,
                deliveries: &deliveries,
                max_attempts: 3,
                now: Utc::now(),
            };
            let inserted = store.insert_events_at(&[row], &[], version).await.unwrap();
            let written = store.delivery(&delivery).await.unwrap().is_some();
            (inserted, written, delivery)
        }
    };
    let (inserted, written, delivery) = publish_at(Some(first)).await;
    assert_eq!((inserted, written), (Inserted::Written, true), "at the version read");

    // A failure moves the endpoint's health, not its subscription.
    let failed = record(&delivery, &ep, 1, DeliveryStatus::Retrying, 500);
    store.record_attempts(&[failed]).await.unwrap();
    assert_eq!(store.endpoint(&ep).await.unwrap().unwrap().failure_count, 1);
    assert_eq!(store.subscriptions().await.unwrap().version, Some(first));
    assert_eq!(publish_at(Some(first)).await.0, Inserted::Written);

    // Each change to what the endpoint receives makes the version read stale.
    let patch = |event_types: Option<&str>, enabled: Option<bool>| EndpointPatch {
        url: None,
        description: None,
        event_types: event_types.map(str::to_owned),
        rate_limit_per_second: None,
        enabled,
    };
    let mut version = first;
    for (what, change) in [
        ("re-subscribed", patch(Some("invoice.*"), None)),
        ("disabled", patch(None, Some(false))),
        ("enabled", patch(None, Some(true))),
    ] {
        let audit = support::test_audit();
        store.update_endpoint(&ep, &change, Utc::now(), &audit).await.unwrap().unwrap();
        let (inserted, written, _) = publish_at(Some(version)).await;
        assert_eq!((inserted, written), (Inserted::SubscriptionsChanged, false), "{what}");
        let now = store.subscriptions().await.unwrap().version.expect("a version");
        assert_ne!(now, version, "{what}");
        version = now;
        assert_eq!(publish_at(Some(version)).await.0, Inserted::Written, "{what}, read again");
    }
    store.delete_endpoint(&ep, Utc::now(), &support::test_audit()).await.unwrap();
    let (inserted, written, _) = publish_at(Some(version)).await;
    assert_eq!((inserted, written), (Inserted::SubscriptionsChanged, false), "deleted");
    assert_eq!(publish_at(None).await.0, Inserted::Written, "unchecked");

    // Without its version row the subscriptions are still read whole, with no version.
    let other = support::unique("ep_");
    store
        .insert_endpoint(&new_endpoint(&other, &owner), Utc::now(), &support::test_audit())
        .await
        .unwrap();
    let gone = "DELETE FROM webhook_subscriptions_version";
    match &store {
        Store::Postgres(pool, _) => {
            sqlx::query(gone).execute(pool).await.unwrap();
        }
        Store::Sqlite(pool, _) => {
            sqlx::query(gone).execute(pool).await.unwrap();
        }
    }
    let read = store.subscriptions().await.unwrap();
    assert_eq!(read.version, None);
    assert!(read.endpoints.iter().any(|s| s.endpoint_id.as_str() == other));
    let (inserted, written, _) = publish_at(None).await;
    assert_eq!((inserted, written), (Inserted::Written, true), "unchecked, with no version row");
    let (inserted, written, _) = publish_at(Some(version)).await;
    assert_eq!((inserted, written), (Inserted::SubscriptionsChanged, false), "no version row");
}

both_backends!(a_publisher_follows_changes_made_by_another_process);
/// The publisher keeps the subscriptions it read, and every change to them made elsewhere
/// (another process' store) reaches its next publish.
async fn a_publisher_follows_changes_made_by_another_process(env: TestEnv) {
    let publishing = env.services().await;
    let other = env.services().await.store;
    let owner = Owner::Tenant(TenantId::generate());
    let publish = || {
        let (services, owner) = (publishing.clone(), owner.clone());
        async move {
            let data = serde_json::json!({});
            events::publish(&services, &owner, "order.paid", &data, None, Audience::Subscribers)
                .await
                .unwrap()
                .delivery_ids
                .len()
        }
    };
    // Warm: publishes read the (no) subscriptions and keep them.
    for _ in 0..4 {
        assert_eq!(publish().await, 0);
    }
    let ep = support::unique("ep_");
    let mut new = new_endpoint(&ep, &owner);
    new.event_types = "order.*".into();
    other.insert_endpoint(&new, Utc::now(), &support::test_audit()).await.unwrap();
    for _ in 0..4 {
        assert_eq!(publish().await, 1, "an endpoint added elsewhere");
    }
    let off = EndpointPatch {
        url: None,
        description: None,
        event_types: None,
        rate_limit_per_second: None,
        enabled: Some(false),
    };
    other.update_endpoint(&ep, &off, Utc::now(), &support::test_audit()).await.unwrap();
    for _ in 0..4 {
        assert_eq!(publish().await, 0, "disabled elsewhere");
    }
}
