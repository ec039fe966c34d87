//! The webhook records, in two parts: endpoints, and what publishing an event creates.

mod deliveries;
mod endpoints;

pub use deliveries::{AttemptRecord, AttemptRow, Claim, ClaimedDelivery, DeliveryRow, NewEvent};
pub use endpoints::{EndpointPatch, EndpointRow, NewEndpoint, secret_context};
