//! The PIDMS records: runs and batches, keys and products.

mod keys;
mod runs;

pub use keys::{KeySearch, PidmsKey, ProductSummary};
pub use runs::{BatchRef, NewPidmsBatch, NewPidmsRun, PidmsBatch, PidmsRun};
