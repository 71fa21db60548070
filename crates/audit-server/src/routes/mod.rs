//! The HTTP routes; each handler turns wire data into domain calls and back.

use actix_web::web;

mod events;
mod fallback;
mod internal;

pub use fallback::not_found;
pub use internal::probe_readiness;

/// The route patterns, also used as `path_template` metric labels.
pub const EVENTS_PATH: &str = "/api/event";

pub fn configure(config: &mut web::ServiceConfig) {
    config
        .service(
            web::resource(EVENTS_PATH)
                .route(web::get().to(events::get_events))
                .route(web::post().to(events::post_events))
                .default_service(fallback::method_not_allowed("GET, POST")),
        )
        .service(internal_resource(
            "/health",
            "GET",
            web::get().to(internal::health),
        ))
        .service(internal_resource(
            "/ready",
            "GET",
            web::get().to(internal::ready),
        ))
        .service(internal_resource(
            "/metrics",
            "GET",
            web::get().to(internal::metrics),
        ))
        .service(internal_resource(
            "/reload",
            "POST",
            web::post().to(internal::reload),
        ))
        .service(internal_resource(
            "/openapi.json",
            "GET",
            web::get().to(internal::openapi),
        ));
}

/// A resource with one route; every other method is 405 naming `allow`.
fn internal_resource(
    path: &str,
    allow: &'static str,
    route: actix_web::Route,
) -> actix_web::Resource {
    web::resource(path)
        .route(route)
        .default_service(fallback::method_not_allowed(allow))
}
