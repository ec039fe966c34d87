//! Everything two or more Switchyard processes need: configuration, the store, the queue
//! adapters, job messages, metric names. This crate knows nothing about HTTP.

pub mod access;
pub mod audit;
pub mod canary;
pub mod config;
pub mod crypto;
pub mod ids;
pub mod jobs;
pub mod netguard;
pub mod pidms;
pub mod queue;
pub mod quotas;
pub mod ratelimit;
pub mod schedules;
pub mod secret;
pub mod services;
pub mod sikka;
pub mod store;
pub mod telemetry;
pub mod tenants;
mod text_enum;
pub mod webhooks;

pub use tokio_util::sync::CancellationToken;
