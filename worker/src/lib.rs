//! Switchyard's workers: one apalis worker per queue in a `Monitor`, each job wrapped in our
//! metrics layer and dispatched to a handler by its message kind.

mod handlers;
mod metrics_layer;
mod monitor;
mod pidms;
mod sikka;
mod transport;
mod wake;
mod webhooks;

pub use handlers::Outcome;
pub use monitor::{WorkerError, WorkerOptions, run};
