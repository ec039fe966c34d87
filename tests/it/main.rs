//! The integration tests, one binary (its link paid once): the real system on both backends —
//! in process, or as the real binary's child processes — against PostgreSQL, Redis and
//! SQLite files, loopback receivers and the upstream simulators. `cargo test --test it
//! webhooks::` runs one area.

#[macro_use]
mod support;

mod access;
mod audit;
mod auth_throttle;
mod connections;
mod console;
mod dispatch;
mod foundation;
mod input;
mod jobs;
mod ops;
mod outages;
mod pidms;
mod processes;
mod quotas;
mod sdks;
mod shape;
mod sikka;
mod store_contract;
mod store_deliveries;
mod store_plans;
mod suspension;
mod tenants;
mod usage_series;
mod webhooks;
