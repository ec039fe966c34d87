//! The store's contract, on both backends, below the API (in the spirit of River's driver
//! tests): what each conditional write promises when workers race, crash or repeat
//! themselves, and that the two schemas are the same schema.

use crate::support;

use std::collections::BTreeMap;

use chrono::{Duration, Utc};
use support::{Backend, TestEnv};
use switchyard_shared::{
    audit::AuditFilter,
    ids::TenantId,
    jobs::{CanaryJob, Job},
    queue::{DiscardOutcome, QueueName, RetryOutcome},
    sikka::{Ending, NewWriteback, PracticeUpsert, Submitted, WritebackStatus},
    store::{Claim, Store, StoredResponse},
    tenants::{NewTenant, Owner, TenantStatus},
    webhooks::{NewDelivery, NewEndpoint, NewEvent},
};

/// An endpoint to nowhere (these tests never send), subscribed to everything.
pub(crate) fn new_endpoint(id: &str, owner: &Owner) -> NewEndpoint {
    NewEndpoint {
        id: id.into(),
        url: "http://127.0.0.1:9/hook".into(),
        description: None,
        event_types: "*".into(),
        secret_sealed: "sealed".into(),
        rate_limit_per_second: None,
        environment: "test".into(),
        created_by: None,
        tenant_id: owner.clone(),
    }
}

/// A new endpoint to nowhere; returns its id.
pub(crate) async fn an_endpoint(store: &Store) -> String {
    let ep = support::unique("ep_");
    store
        .insert_endpoint(&new_endpoint(&ep, &Owner::Platform), Utc::now(), &support::test_audit())
        .await
        .unwrap();
    ep
}

/// One event with one delivery to `ep`; returns the delivery id.
pub(crate) async fn a_delivery_to(store: &Store, ep: &str, max_attempts: i64) -> String {
    let (event, delivery) = (support::unique("evt_"), support::unique("msg_"));
    let deliveries = [NewDelivery { id: delivery.clone().into(), endpoint_id: ep.into() }];
    store
        .insert_events_with_deliveries(
            &[NewEvent {
                event_id: &event,
                event_type: "contract.test",
                payload: r#"{"n":1}"#,
                source: None,
                tenant_id: &Owner::Platform,
                deliveries: &deliveries,
                max_attempts,
                now: Utc::now(),
            }],
            &[],
        )
        .await
        .unwrap();
    delivery
}

both_backends!(writeback_checks_count_once_and_a_writeback_ends_once);
async fn writeback_checks_count_once_and_a_writeback_ends_once(env: TestEnv) {
    let store = env.services().await.store;
    let now = Utc::now();
    let practice = support::unique("sp_");
    store
        .upsert_sikka_practice(&PracticeUpsert {
            id: &practice,
            office_digest: &support::unique("digest-"),
            office_id_sealed: "sealed",
            secret_key_sealed: "sealed",
            practice_id: Some("1"),
            practice_name: None,
            practice_management_system: None,
            domain: None,
            now,
        })
        .await
        .unwrap();
    let id = support::unique("wb_");
    store
        .insert_sikka_writeback(
            &NewWriteback {
                id: &id,
                practice_ref: &practice,
                operation: "appointment_create",
                target_id: None,
                body: "{}",
                deadline_at: now + Duration::minutes(10),
                created_by: None,
                now,
            },
            &support::test_audit(),
        )
        .await
        .unwrap();

    // The submission lease: one holder at a time, taken over once it lapses.
    let lease = now + Duration::seconds(30);
    assert!(store.claim_sikka_submission(&id, lease, now).await.unwrap().is_some());
    assert!(store.claim_sikka_submission(&id, lease, now).await.unwrap().is_none());
    let later = lease + Duration::seconds(1);
    let taken = store.claim_sikka_submission(&id, later + Duration::seconds(30), later).await;
    assert_eq!(taken.unwrap().unwrap().submit_attempts, 2);

    let next = now + Duration::seconds(2);
    let accepted = Submitted::Accepted { sikka_id: "SK-1", next_check_at: next };
    assert!(store.record_sikka_submission(&id, &accepted, now).await.unwrap());
    assert!(!store.record_sikka_submission(&id, &accepted, now).await.unwrap(), "only once");

    // Check 1 counts once; check 3 before check 2 does not count.
    assert!(store.record_sikka_check(&id, 1, next, now).await.unwrap());
    assert!(!store.record_sikka_check(&id, 1, next, now).await.unwrap());
    assert!(!store.record_sikka_check(&id, 3, next, now).await.unwrap());
    let wb = store.sikka_writeback(&id).await.unwrap().unwrap();
    assert_eq!((wb.status, wb.check_count), (WritebackStatus::Pending, 1));

    // Ending at a check that is not the next one is refused; the right one ends it once.
    let done = Ending::Completed { result: "ok" };
    assert!(!store.finish_sikka_writeback(&id, done, Some(5), now).await.unwrap());
    assert!(store.finish_sikka_writeback(&id, done, Some(2), now).await.unwrap());
    let failed = Ending::Failed { error: "late", result: None };
    assert!(!store.finish_sikka_writeback(&id, failed, None, now).await.unwrap(), "ends once");
    let wb = store.sikka_writeback(&id).await.unwrap().unwrap();
    assert_eq!(
        (wb.status, wb.check_count, wb.result.as_deref()),
        (WritebackStatus::Completed, 2, Some("ok"))
    );
    assert_eq!(wb.error, None);

    // The refresh lock: exclusive until it expires, re-entrant for its owner.
    let until = now + Duration::seconds(30);
    assert!(store.try_lock_sikka_refresh(&practice, "a", until, now).await.unwrap());
    assert!(!store.try_lock_sikka_refresh(&practice, "b", until, now).await.unwrap());
    assert!(store.try_lock_sikka_refresh(&practice, "a", until, now).await.unwrap());
    assert!(
        store
            .try_lock_sikka_refresh(&practice, "b", until, until + Duration::seconds(1))
            .await
            .unwrap()
    );
}

both_backends!(idempotency_claims_replay_and_are_taken_over_when_abandoned);
async fn idempotency_claims_replay_and_are_taken_over_when_abandoned(env: TestEnv) {
    let store = env.services().await.store;
    let (key, ttl, now) = (support::unique("idem-"), Duration::hours(24), Utc::now());
    assert_eq!(store.claim_idempotency("k1", &key, "h1", now, ttl).await.unwrap(), Claim::Execute);
    assert_eq!(
        store.claim_idempotency("k1", &key, "h1", now, ttl).await.unwrap(),
        Claim::InProgress
    );
    assert_eq!(store.claim_idempotency("k1", &key, "h2", now, ttl).await.unwrap(), Claim::Mismatch);
    // Another API key's identical idempotency key is its own.
    assert_eq!(store.claim_idempotency("k2", &key, "h1", now, ttl).await.unwrap(), Claim::Execute);

    let response = StoredResponse {
        status: 202,
        content_type: Some("application/json".into()),
        body: "{}".into(),
    };
    store.complete_idempotency("k1", &key, &response).await.unwrap();
    assert_eq!(
        store.claim_idempotency("k1", &key, "h1", now, ttl).await.unwrap(),
        Claim::Replay(response)
    );

    // k2's request died mid-way: after the abandonment window another request takes it over.
    let later = now + Duration::seconds(61);
    assert_eq!(
        store.claim_idempotency("k2", &key, "h1", later, ttl).await.unwrap(),
        Claim::Execute
    );
    // An expired record is forgotten too.
    let expired = now + ttl + Duration::seconds(1);
    assert_eq!(
        store.claim_idempotency("k1", &key, "h9", expired, ttl).await.unwrap(),
        Claim::Execute
    );
}

both_backends!(a_lease_has_one_holder_until_it_expires);
async fn a_lease_has_one_holder_until_it_expires(env: TestEnv) {
    let store = env.services().await.store;
    let (name, now) = (support::unique("lease-"), Utc::now());
    let until = now + Duration::seconds(15);
    assert!(store.try_acquire_lease(&name, "a", now, until).await.unwrap());
    assert!(!store.try_acquire_lease(&name, "b", now, until).await.unwrap());
    assert!(store.try_acquire_lease(&name, "a", now, until).await.unwrap(), "renewal");
    let later = until + Duration::seconds(1);
    assert!(
        store.try_acquire_lease(&name, "b", later, later + Duration::seconds(15)).await.unwrap()
    );
    store.release_lease(&name, "a").await.unwrap(); // not a's any more: no effect
    assert!(!store.try_acquire_lease(&name, "a", later, later).await.unwrap());
    store.release_lease(&name, "b").await.unwrap();
    assert!(store.try_acquire_lease(&name, "a", later, later).await.unwrap());
}

both_backends!(audit_retention_keeps_changes_longer_than_publishes);
async fn audit_retention_keeps_changes_longer_than_publishes(env: TestEnv) {
    let store = env.services().await.store;
    let now = Utc::now();
    let entry = |action: &'static str, days: i64| {
        let mut e = support::test_audit();
        e.action = action;
        e.at = now - Duration::days(days);
        e
    };
    // (action, age in days, kept with 365 days for changes and 30 for publishes)
    let cases = [
        ("api_key.created", 400, false),
        ("api_key.created", 100, true),
        ("event.published", 100, false),
        ("event.published", 10, true),
        ("tenant.created", 0, true),
    ];
    for (action, days, _) in cases {
        store.insert_audit(&entry(action, days)).await.unwrap();
    }
    let deleted = store
        .delete_audit_before(now - Duration::days(365), Some(now - Duration::days(30)))
        .await
        .unwrap();
    assert_eq!(deleted, 2);
    let left = store.audit_entries(&AuditFilter::default(), 100).await.unwrap();
    let mut left: Vec<(String, i64)> =
        left.into_iter().map(|r| (r.action, (now - r.at).num_days())).collect();
    left.sort();
    let mut want: Vec<(String, i64)> =
        cases.iter().filter(|(_, _, kept)| *kept).map(|(a, d, _)| ((*a).to_owned(), *d)).collect();
    want.sort();
    assert_eq!(left, want);
}

both_backends!(a_waiting_job_is_discarded_once_and_can_be_retried);
async fn a_waiting_job_is_discarded_once_and_can_be_retried(env: TestEnv) {
    let queue = env.services().await.queue;
    let canary = || {
        Job::Canary(CanaryJob {
            run_id: "contract".into(),
            queue: QueueName::Maintenance,
            hold_ms: 0,
        })
    };
    // Due now and delayed: both waiting (no worker runs here).
    let due = queue.push(canary()).await.unwrap();
    let later = queue.push_after(canary(), std::time::Duration::from_secs(3600)).await.unwrap();
    for id in [&due, &later] {
        assert_eq!(queue.discard(id).await.unwrap(), DiscardOutcome::Discarded);
        assert_eq!(queue.discard(id).await.unwrap(), DiscardOutcome::NotWaiting, "once");
        assert_eq!(queue.find(id).await.unwrap().unwrap().status, "dead");
    }
    let stats = queue.stats(QueueName::Maintenance).await.unwrap();
    assert_eq!((stats.pending, stats.scheduled, stats.dead), (0, 0, 2));
    assert_eq!(queue.discard("no-such-job").await.unwrap(), DiscardOutcome::NotFound);
    assert_eq!(queue.retry(&due).await.unwrap(), RetryOutcome::Requeued);
    assert_eq!(queue.find(&due).await.unwrap().unwrap().status, "pending");
}

/// A tenant's owner round-trips through every tenant-owned row; the delete is once, disables
/// the tenant's endpoints (not the platform's) and names its keys.
async fn a_tenant_is_deleted_once_with_its_endpoints(env: TestEnv) {
    let store = env.services().await.store;
    let now = Utc::now();
    let id = TenantId::generate();
    let new = NewTenant { id: id.clone(), name: "t".into(), metadata: "{}".into() };
    let row = store.insert_tenant(&new, now, &support::test_audit()).await.unwrap();
    assert_eq!(row.status, TenantStatus::Active);
    let owner = Owner::Tenant(id.clone());
    let (mine, platform) = (support::unique("ep_"), support::unique("ep_"));
    let got = store
        .insert_endpoint(&new_endpoint(&mine, &owner), now, &support::test_audit())
        .await
        .unwrap();
    assert_eq!(got.tenant_id, owner);
    store
        .insert_endpoint(&new_endpoint(&platform, &Owner::Platform), now, &support::test_audit())
        .await
        .unwrap();
    let (total, listed) = store.list_endpoints(&owner, 0, 10).await.unwrap();
    assert_eq!((total, listed.len(), listed[0].id.as_str()), (1, 1, mine.as_str()));
    let subs = store.subscriptions().await.unwrap();
    assert!(subs.endpoints.iter().any(|s| s.endpoint_id.as_str() == mine && s.tenant_id == owner));

    let keys = store.delete_tenant(&id, now, &support::test_audit()).await.unwrap();
    assert_eq!(keys, Some(Vec::new()));
    assert_eq!(
        store.delete_tenant(&id, now, &support::test_audit()).await.unwrap(),
        None,
        "a second delete finds none"
    );
    let gone = store.tenant(&id).await.unwrap().unwrap();
    assert_eq!((gone.status, gone.deleted_at.is_some()), (TenantStatus::Deleted, true));
    assert!(!store.endpoint(&mine).await.unwrap().unwrap().enabled);
    assert!(store.endpoint(&platform).await.unwrap().unwrap().enabled);
    assert!(
        store
            .update_tenant(&id, &Default::default(), now, &support::test_audit())
            .await
            .unwrap()
            .is_none()
    );
    let (live, _) = store.list_tenants(false, 0, 500).await.unwrap();
    let (all, _) = store.list_tenants(true, 0, 500).await.unwrap();
    assert_eq!(all, live + 1);
}
both_backends!(a_tenant_is_deleted_once_with_its_endpoints);

/// Tables → columns, and index names, as the live database reports them.
type Schema = (BTreeMap<String, Vec<String>>, Vec<String>);

async fn schema_of(store: &Store) -> Schema {
    let mut tables: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let indexes: Vec<String> = match store {
        Store::Sqlite(pool, _) => {
            let rows: Vec<(String, String)> = sqlx::query_as(
                "SELECT m.name, p.name FROM sqlite_master m, pragma_table_info(m.name) p
                 WHERE m.type IN ('table', 'view') AND m.name NOT LIKE 'sqlite_%' AND m.name NOT LIKE '_sqlx%'",
            )
            .fetch_all(pool)
            .await
            .unwrap();
            for (t, c) in rows {
                tables.entry(t).or_default().push(c);
            }
            sqlx::query_scalar(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL",
            )
            .fetch_all(pool)
            .await
            .unwrap()
        }
        Store::Postgres(pool, _) => {
            let rows: Vec<(String, String)> = sqlx::query_as(
                "SELECT table_name::text, column_name::text FROM information_schema.columns
                 WHERE table_schema = 'public' AND table_name NOT LIKE '_sqlx%'",
            )
            .fetch_all(pool)
            .await
            .unwrap();
            for (t, c) in rows {
                tables.entry(t).or_default().push(c);
            }
            // Indexes made by CREATE INDEX (not those behind primary keys and constraints).
            sqlx::query_scalar(
                "SELECT i.indexname::text FROM pg_indexes i
                 WHERE i.schemaname = 'public' AND NOT EXISTS (
                   SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)",
            )
            .fetch_all(pool)
            .await
            .unwrap()
        }
    };
    for columns in tables.values_mut() {
        columns.sort();
    }
    let mut indexes = indexes;
    indexes.sort();
    (tables, indexes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_migrations_build_the_same_tables_columns_and_indexes() {
    let Some(embedded) = TestEnv::new(Backend::Embedded).await else { return };
    let Some(fleet) = TestEnv::new(Backend::Fleet).await else { return };
    let (sqlite, postgres) = (
        schema_of(&embedded.services().await.store).await,
        schema_of(&fleet.services().await.store).await,
    );
    assert!(sqlite.0.len() >= 10, "the SQLite schema was read: {:?}", sqlite.0.keys());
    assert!(!sqlite.1.is_empty(), "the SQLite indexes were read");
    assert_eq!(sqlite.0, postgres.0, "tables and columns differ between the migrations");
    // The indexes each dialect has on its own, each for a reason the migration gives.
    // (name, always there): the indexes each dialect has on its own, for reasons the
    // migrations give.
    let only_sqlite = [
        // SQLite sorts NULL products first: these lead with `prd IS NULL` (0007).
        ("pidms_keys_order", true),
        ("pidms_keys_blocked_order", true),
    ];
    let only_postgres = [
        // The blocked-keys order, which SQLite replaced with `pidms_keys_blocked_order` (0007).
        ("pidms_keys_blocked", true),
        // Trigram search on product names, only where the pg_trgm extension may be created.
        ("pidms_products_prd_trgm", false),
    ];
    let common = |indexes: &[String], own: &[(&str, bool)]| -> Vec<String> {
        for (name, always) in own {
            assert!(!always || indexes.iter().any(|i| i == name), "the index {name} is gone");
        }
        indexes.iter().filter(|i| !own.iter().any(|(n, _)| n == i)).cloned().collect()
    };
    assert_eq!(
        common(&sqlite.1, &only_sqlite),
        common(&postgres.1, &only_postgres),
        "indexes differ between the migrations"
    );
}
