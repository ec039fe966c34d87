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

/// `#[boxed]` on an async fn makes it return its future boxed (`Pin<Box<dyn Future + Send>>`),
/// so its body is compiled once, in the crate that defines it. rustc compiles an async fn's
/// body (and all it awaits) where its future is polled: unboxed, the roles (`worker::run`,
/// `api::run`, `api::serve`, `Scheduler::run`) were compiled again into the binary and the
/// test binary, and the store's and the queue's methods into every crate that awaits them,
/// each with its own copy of sqlx for both backends. (The attribute is `async-recursion`'s,
/// which boxes an async fn with the lifetimes of its arguments.)
pub use async_recursion::async_recursion as boxed;
