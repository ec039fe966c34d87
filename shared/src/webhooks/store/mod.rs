//! The webhook records, in two parts: endpoints, and what publishing an event creates.

mod arrays;
mod claims;
mod deliveries;
mod endpoints;
mod history;
mod readback;

pub use deliveries::{
    AttemptRecord, AttemptRow, Claim, ClaimedDelivery, DeliveryRow, DueDelivery, Inserted,
    NewDelivery, NewEvent, RetriedDelivery, SUCCESS_REFRESH,
};
pub use endpoints::{
    EndpointPatch, EndpointRow, NewEndpoint, Subscription, Subscriptions, secret_context,
};
pub use history::{DeliveryFilter, EventFilter, EventRow};
pub use readback::ReadBackClaim;
