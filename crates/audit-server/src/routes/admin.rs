//! `/admin/tokens`: managing tokens over HTTP, for an admin token (or, while
//! `auth.mode` is `off`, a caller on the same host). The same operations as
//! `audit-server token ...`, through the same store.

use actix_web::{HttpRequest, HttpResponse, web};
use audit_core::access::{self, Actor, CreateError, RevokeOutcome, TokenRequest};
use serde_json::json;
use time::OffsetDateTime;

use crate::auth::{self, upkeep};
use crate::errors::{ApiError, Detail};
use crate::state::AppState;

pub async fn list_tokens(
    state: web::Data<AppState>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    admin(&state, &request)?;
    let runtime = state.runtime();
    let tokens = access::list_tokens(&runtime.repository.pool()).await?;
    Ok(HttpResponse::Ok().json(json!({ "tokens": tokens })))
}

pub async fn create_token(
    state: web::Data<AppState>,
    request: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let actor = admin(&state, &request)?;
    let token_request: TokenRequest = serde_json::from_slice(&body).map_err(|error| {
        ApiError::Validation(vec![Detail {
            line: Some(error.line()),
            column: Some(error.column()),
            problem: error.to_string(),
            ..Detail::default()
        }])
    })?;
    let token = token_request
        .into_new_token(OffsetDateTime::now_utc())
        .map_err(|error| {
            ApiError::Validation(vec![Detail {
                field: Some(error.field.to_owned()),
                problem: error.problem,
                ..Detail::default()
            }])
        })?;
    let runtime = state.runtime();
    let secret = access::create_token(&runtime.repository.pool(), &token, &actor)
        .await
        .map_err(|error| match error {
            CreateError::NameTaken(_) => ApiError::Conflict(error.to_string()),
            CreateError::Storage(error) => ApiError::from(error),
        })?;
    reread(&state).await;
    Ok(HttpResponse::Created().json(json!({
        "name": token.name.as_str(),
        "secret": secret.expose(),
        "write": token.write.to_list(),
        "read": token.read.to_list(),
        "admin": token.admin,
        "expires_at": access::rfc3339(token.expires_at),
    })))
}

pub async fn revoke_token(
    state: web::Data<AppState>,
    request: HttpRequest,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let actor = admin(&state, &request)?;
    let runtime = state.runtime();
    let outcome = access::revoke_token(&runtime.repository.pool(), &name, &actor).await?;
    reread(&state).await;
    match outcome {
        RevokeOutcome::Unknown => Err(ApiError::TokenNotFound(format!("no token is named {name:?}"))),
        RevokeOutcome::Revoked | RevokeOutcome::AlreadyRevoked => Ok(HttpResponse::Ok().json(
            json!({ "name": name.as_str(), "revoked": true, "already_revoked": outcome == RevokeOutcome::AlreadyRevoked }),
        )),
    }
}

fn admin(state: &AppState, request: &HttpRequest) -> Result<Actor, ApiError> {
    let mode = state.runtime_ref().settings.auth.mode;
    auth::admin_actor(&state.tokens, mode, request)
}

/// This server applies its own change at once; the others within their reread
/// interval.
async fn reread(state: &AppState) {
    if let Err(error) = upkeep::reread_tokens(state).await {
        tracing::warn!(error = %audit_core::storage_error::cause_chain(&error), "cannot reread the tokens");
    }
}
