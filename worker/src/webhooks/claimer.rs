//! Claims in groups: deliveries starting at about the same time claim their attempts (and
//! read their payloads) in one statement instead of one round trip each.

use std::{collections::HashMap, time::Duration};

use chrono::Utc;
use switchyard_shared::ids::DeliveryId;
use switchyard_shared::store::Store;
use switchyard_shared::webhooks::ClaimedDelivery;

use super::group_commit::{GroupCommit, GroupError};

const MAX_BATCH: usize = 256;
/// Claim statements in flight at once on PostgreSQL: claims touch disjoint rows, so a
/// batch need not wait behind the one being written (SQLite has one writer: one).
const IN_FLIGHT_POSTGRES: usize = 3;

#[derive(Clone)]
pub(crate) struct Claimer {
    group: GroupCommit<(DeliveryId, i64), Option<ClaimedDelivery>>,
}

impl Claimer {
    /// `lease`: how long a claimed attempt is this worker's.
    pub(crate) fn start(store: Store, lease: Duration) -> Self {
        let in_flight = if store.kind() == "postgres" { IN_FLIGHT_POSTGRES } else { 1 };
        let group = GroupCommit::start(
            "claimer",
            MAX_BATCH,
            in_flight,
            // A claim stands between a delivery and its request: never held back.
            Duration::ZERO,
            move |wanted: Vec<(DeliveryId, i64)>| {
                let store = store.clone();
                async move {
                    let now = Utc::now();
                    let until = now + chrono::Duration::from_std(lease).unwrap_or_default();
                    let rows = store.claim_deliveries(&wanted, until, now).await?;
                    let mut claimed: HashMap<DeliveryId, ClaimedDelivery> =
                        rows.into_iter().map(|c| (c.id.clone(), c)).collect();
                    // Two copies of one message in a batch: the first gets the claim.
                    Ok(wanted.iter().map(|(id, _)| claimed.remove(id)).collect())
                }
            },
        );
        Self { group }
    }

    /// The attempt with its payload, or `None` when it is not this worker's to make.
    pub(crate) async fn claim(
        &self,
        delivery_id: DeliveryId,
        attempt: i64,
    ) -> Result<Option<ClaimedDelivery>, GroupError> {
        self.group.submit((delivery_id, attempt)).await
    }
}
