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

/// A role's main future, boxed in the crate that defines it. rustc compiles an async fn's
/// body (and all it awaits) where the future is polled: returned unboxed, the API, the
/// workers and the scheduler were compiled a second time into the binary and again into the
/// test binary. Boxed here, the vtable — and with it the body — is compiled once, here.
pub type BoxedRun<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'static>>;

/// `#[boxed]` on an async fn makes it return its future boxed (`Pin<Box<dyn Future + Send>>`),
/// for the same reason as [`BoxedRun`]: the store's and the queue's methods are awaited from
/// the API, the workers, the scheduler, the binary and the tests, and unboxed each of them
/// compiled every body again, with its own copy of sqlx for both backends. (The attribute is
/// `async-recursion`'s, which boxes an async fn with the lifetimes of its arguments.)
pub use async_recursion::async_recursion as boxed;
