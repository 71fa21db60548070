//! `/ui`: the built-in event viewer. Its three files are compiled into the binary, so
//! the page needs no build step, no CDN and no internet; everything it shows it reads
//! from this server's own API, with the reader's token when tokens are on.

use actix_web::http::header;
use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::settings::AuthMode;
use crate::state::AppState;

pub const UI_PATH: &str = "/ui";
pub const UI_SCRIPT_PATH: &str = "/ui/viewer.js";
pub const UI_STYLE_PATH: &str = "/ui/viewer.css";
pub const UI_SETTINGS_PATH: &str = "/ui/settings.json";

const PAGE: &str = include_str!("../../ui/index.html");
const SCRIPT: &str = include_str!("../../ui/viewer.js");
const STYLE: &str = include_str!("../../ui/viewer.css");

/// Only this origin, for everything: the page cannot load or send anything elsewhere
/// even if an event's payload were to smuggle markup into it.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; connect-src 'self'; img-src 'self' data:; form-action 'self'; \
     base-uri 'none'; frame-ancestors 'none'";

pub async fn page() -> HttpResponse {
    asset("text/html; charset=utf-8", PAGE)
}

pub async fn script() -> HttpResponse {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

pub async fn style() -> HttpResponse {
    asset("text/css; charset=utf-8", STYLE)
}

/// What the page needs to know before its first request: whether to ask for a token,
/// the largest page it may ask for, and the verifier key the operator configured
/// (the user may paste another).
pub async fn settings(state: web::Data<AppState>) -> HttpResponse {
    let runtime = state.runtime();
    let settings = &runtime.settings;
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(json!({
            "auth_mode": match settings.auth.mode {
                AuthMode::Off => "off",
                AuthMode::Tokens => "tokens",
            },
            "default_page_size": settings.api.default_page_size,
            "max_page_size": settings.api.max_page_size,
            "integrity": state.started_settings.integrity.is_enabled(),
            "verifier_key": settings.integrity.verifier_key,
        }))
}

fn asset(content_type: &'static str, body: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, content_type))
        .insert_header((header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        // Small, and a new binary may change them: revalidated on every load.
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(body)
}
