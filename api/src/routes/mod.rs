//! The `/api/v1` operations, grouped by area; each area is one poem-openapi `OpenApi`.

mod queues;

use poem_openapi::{OpenApiService, Tags};
use switchyard_shared::services::Services;

#[derive(Tags)]
pub(crate) enum ApiTags {
    /// Queues, jobs, canaries and schedules.
    Jobs,
}

pub(crate) type Apis = queues::QueuesApi;

pub(crate) fn openapi(services: &Services) -> OpenApiService<Apis, ()> {
    OpenApiService::new(
        queues::QueuesApi { services: services.clone() },
        "Switchyard",
        env!("CARGO_PKG_VERSION"),
    )
    .description(
        "A job-queue worker fleet for integration work: signed webhook deliveries, PIDKey \
         batch checks, Sikka writebacks, scheduled maintenance.",
    )
    .server("/api/v1")
}
