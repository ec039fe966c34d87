//! The plans of the delivery path's hot statements, on both backends. A regression here is
//! no wrong answer but a throughput cliff (a read-back that sorted an endpoint's backlog, or
//! walked past every delivered row, ran hundreds of times a second in a burst and made
//! PostgreSQL the bound at a third of today's rate), so their shape is held here.

use crate::store_contract::{a_delivery_to, an_endpoint};
use crate::support::TestEnv;

both_backends!(a_read_back_walks_only_open_deliveries_in_id_order);
async fn a_read_back_walks_only_open_deliveries_in_id_order(env: TestEnv) {
    let store = env.services().await.store;
    let ep = an_endpoint(&store).await;
    for _ in 0..3 {
        a_delivery_to(&store, &ep, 3).await;
    }
    let plan = store.explain_read_back(&ep).await.unwrap().join("\n");
    assert!(
        plan.contains("webhook_deliveries_open"),
        "not through the open-deliveries index:\n{plan}"
    );
    if store.kind() == "postgres" {
        for node in ["Sort", "Seq Scan", "Bitmap"] {
            assert!(!plan.contains(node), "a read-back plan with {node}:\n{plan}");
        }
    } else {
        assert!(!plan.contains("TEMP B-TREE"), "a read-back that sorts:\n{plan}");
    }
}
