//! Access: API keys (their format, digest and scopes), their records, and usage analytics.

pub mod keys;
mod series;
mod store;
mod usage;

pub use keys::*;
pub use series::{SeriesPoint, SeriesWindow};
pub use store::{ApiKeyPatch, ApiKeyRow, KeyQuotas, KeyStatus, KeyUse, NewApiKey};
pub use usage::{KeyUsage, UsageEvent};
