//! Switchyard's scheduler: cron schedules driven by the `cron` crate in our own loop, under
//! a leader lock, each tick *enqueuing* work on a queue rather than doing it inline.

mod actions;
mod depth;
mod leader;
mod scheduler;
mod ticks;

pub use depth::sample_queue_depth;
pub use scheduler::{Scheduler, SchedulerError};
pub use ticks::{Due, next_due};
