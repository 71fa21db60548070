//! The HTTP routes; each handler turns wire data into domain calls and back.

use actix_web::web;

mod admin;
mod events;
mod export;
mod fallback;
mod internal;
mod proofs;
mod stream;
mod viewer;

pub use fallback::not_found;
pub use internal::probe_readiness;
pub use stream::ShuttingDown;

/// The route patterns, also used as `path_template` metric labels.
pub const EVENTS_PATH: &str = "/api/event";
pub const EXPORT_PATH: &str = "/api/event/export";
pub const STREAM_PATH: &str = "/api/event/stream";
pub const CHECKPOINT_PATH: &str = "/api/checkpoint";
pub const EVENT_PROOF_PATH: &str = "/api/event/{id}/proof";
pub const CONSISTENCY_PATH: &str = "/api/consistency";
pub const TILE_PATH: &str = "/api/tile/{path:.+}";
pub const ADMIN_TOKENS_PATH: &str = "/admin/tokens";
pub const ADMIN_TOKEN_PATH: &str = "/admin/tokens/{name}";

/// Which routes a listener serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Surface {
    /// Everything, on one listener (no `admin.listen`).
    All,
    /// The main listener beside an operators' one: the API, probes and the document.
    Public,
    /// The operators' listener: `/metrics`, `/reload`, `/admin/*`, and `/health`.
    Operators,
}

pub fn configure(config: &mut web::ServiceConfig, surface: Surface) {
    let public = surface != Surface::Operators;
    let operators = surface != Surface::Public;
    if public {
        config
            .service(
                web::resource(EVENTS_PATH)
                    .route(web::get().to(events::get_events))
                    .route(web::post().to(events::post_events))
                    .default_service(fallback::method_not_allowed("GET, POST")),
            )
            .service(internal_resource(
                EXPORT_PATH,
                "GET",
                web::get().to(export::export_events),
            ))
            .service(internal_resource(
                STREAM_PATH,
                "GET",
                web::get().to(stream::stream_events),
            ))
            .service(internal_resource(
                CHECKPOINT_PATH,
                "GET",
                web::get().to(proofs::latest_checkpoint),
            ))
            .service(internal_resource(
                EVENT_PROOF_PATH,
                "GET",
                web::get().to(proofs::event_proof),
            ))
            .service(internal_resource(
                CONSISTENCY_PATH,
                "GET",
                web::get().to(proofs::consistency),
            ))
            .service(internal_resource(
                TILE_PATH,
                "GET",
                web::get().to(proofs::tile),
            ))
            .service(internal_resource(
                "/ready",
                "GET",
                web::get().to(internal::ready),
            ))
            .service(internal_resource(
                viewer::UI_PATH,
                "GET",
                web::get().to(viewer::page),
            ))
            .service(internal_resource(
                viewer::UI_SCRIPT_PATH,
                "GET",
                web::get().to(viewer::script),
            ))
            .service(internal_resource(
                viewer::UI_STYLE_PATH,
                "GET",
                web::get().to(viewer::style),
            ))
            .service(internal_resource(
                viewer::UI_SETTINGS_PATH,
                "GET",
                web::get().to(viewer::settings),
            ))
            .service(internal_resource(
                "/openapi.json",
                "GET",
                web::get().to(internal::openapi),
            ));
    }
    config.service(internal_resource(
        "/health",
        "GET",
        web::get().to(internal::health),
    ));
    if operators {
        config
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
            .service(
                web::resource(ADMIN_TOKENS_PATH)
                    .route(web::get().to(admin::list_tokens))
                    .route(web::post().to(admin::create_token))
                    .default_service(fallback::method_not_allowed("GET, POST")),
            )
            .service(internal_resource(
                ADMIN_TOKEN_PATH,
                "DELETE",
                web::delete().to(admin::revoke_token),
            ));
    }
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
