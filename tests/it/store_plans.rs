//! The plans of the delivery path's hot statements, on both backends. A regression here is
//! no wrong answer but a throughput cliff (a read-back that sorted an endpoint's backlog, or
//! walked past every delivered row, ran hundreds of times a second in a burst and made
//! PostgreSQL the bound at a third of today's rate), so their shape is held here.

use chrono::Utc;
use switchyard_shared::{
    store::Store,
    tenants::Owner,
    webhooks::{NewDelivery, NewEvent},
};

use crate::store_contract::{a_delivery_to, an_endpoint};
use crate::support::{self, TestEnv};

/// `n` more deliveries to `ep`, written in one go as a burst's publishes are.
async fn a_backlog(store: &Store, ep: &str, n: usize) {
    let rows: Vec<(String, [NewDelivery; 1])> = (0..n)
        .map(|_| {
            let delivery =
                NewDelivery { id: support::unique("msg_").into(), endpoint_id: ep.into() };
            (support::unique("evt_"), [delivery])
        })
        .collect();
    let now = Utc::now();
    let events: Vec<NewEvent<'_>> = rows
        .iter()
        .map(|(event_id, deliveries)| NewEvent {
            event_id,
            event_type: "plan.test",
            payload: "{}",
            source: None,
            tenant_id: &Owner::Platform,
            deliveries,
            max_attempts: 3,
            now,
        })
        .collect();
    store.insert_events_with_deliveries(&events, &[]).await.unwrap();
}

both_backends!(a_read_back_reads_an_index_in_id_order_without_sorting);
async fn a_read_back_reads_an_index_in_id_order_without_sorting(env: TestEnv) {
    let store = env.services().await.store;
    let ep = an_endpoint(&store).await;
    a_delivery_to(&store, &ep, 3).await;
    // Statistics taken while the backlog was one delivery, then a burst: as in a real one,
    // the table grows far faster than autovacuum analyzes it. Estimating from them,
    // PostgreSQL's own choice was a bitmap scan and a sort of the whole open backlog.
    if let Store::Postgres(pool, _) = &store {
        sqlx::query("ANALYZE webhook_deliveries").execute(pool).await.unwrap();
    }
    a_backlog(&store, &ep, 3_000).await;
    // Mid-burst: most of it delivered already, each row claimed and then recorded (two
    // updates, as the workers write them). Those rows are what a read-back through the
    // endpoint's whole-history index walked past.
    for set in ["claimed_until = next_attempt_at", "status = 'delivered', claimed_until = NULL"] {
        let sql = format!(
            "UPDATE webhook_deliveries SET {set} \
             WHERE id IN (SELECT id FROM webhook_deliveries WHERE endpoint_id = $1 \
                          ORDER BY id LIMIT 2000)"
        );
        let marked = switchyard_shared::on_pool!(&store, pool => {
            let update = sqlx::query(sqlx::AssertSqlSafe(sql.clone())).bind(&ep);
            update.execute(pool).await.unwrap().rows_affected()
        });
        assert_eq!(marked, 2000);
    }

    let plan = store.explain_read_back(&ep).await.unwrap().join("\n");
    if store.kind() == "postgres" {
        // In id order straight off an index of the endpoint's deliveries: no sort of the
        // backlog, no scan of the table. Which of the two indexes is the planner's call on
        // estimates this stale: here it takes the endpoint's whole-history one, which walks
        // past delivered rows on a read-back from the start (see ARCHITECTURE.md).
        for node in ["Sort", "Seq Scan", "Bitmap"] {
            assert!(!plan.contains(node), "a read-back plan with {node}:\n{plan}");
        }
        assert!(
            plan.contains("Index Scan using webhook_deliveries_open")
                || plan.contains("Index Scan using webhook_deliveries_endpoint"),
            "not an index scan of the endpoint's deliveries:\n{plan}"
        );
    } else {
        assert!(
            plan.contains("webhook_deliveries_open"),
            "not through the open-deliveries index:\n{plan}"
        );
        assert!(!plan.contains("TEMP B-TREE"), "a read-back that sorts:\n{plan}");
    }
}

both_backends!(a_claim_is_a_primary_key_lookup_on_stale_statistics);
/// The claim runs outside a keyed-plan transaction, so its own text must leave the planner
/// one sensible plan. Spelled with the open statuses, it matched the predicate of the partial
/// `open` and `due` indexes, and on statistics from a nearly empty table PostgreSQL scanned
/// every open delivery through one of them for each claim (3–43 ms each beside dead
/// endpoints' backlogs).
async fn a_claim_is_a_primary_key_lookup_on_stale_statistics(env: TestEnv) {
    let store = env.services().await.store;
    let ep = an_endpoint(&store).await;
    let first = a_delivery_to(&store, &ep, 3).await;
    if let Store::Postgres(pool, _) = &store {
        sqlx::query("ANALYZE webhook_deliveries").execute(pool).await.unwrap();
    }
    a_backlog(&store, &ep, 3_000).await;
    let wanted: Vec<_> =
        [first.as_str(), "msg_a", "msg_b", "msg_c"].iter().map(|id| ((*id).into(), 1)).collect();
    let plan = store.explain_claim(&wanted).await.unwrap().join("\n");
    if store.kind() == "postgres" {
        assert!(plan.contains("webhook_deliveries_pkey"), "not by primary key:\n{plan}");
        for scan in
            ["webhook_deliveries_open", "webhook_deliveries_due", "Seq Scan on webhook_deliveries"]
        {
            assert!(!plan.contains(scan), "a claim through {scan}:\n{plan}");
        }
    } else {
        assert!(
            plan.contains("webhook_deliveries USING INDEX sqlite_autoindex_webhook_deliveries_1")
                || plan.contains("webhook_deliveries USING PRIMARY KEY"),
            "not by primary key:\n{plan}"
        );
    }
}
