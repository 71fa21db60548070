//! Tamper evidence over HTTP: the latest signed checkpoint, an event's inclusion proof
//! and the consistency proof of two checkpointed sizes.

use actix_web::http::header::ContentType;
use actix_web::{HttpRequest, HttpResponse, web};
use audit_core::access::Applications;
use audit_core::merkle::Hash;
use audit_core::storage_error::{StorageError, bounded, call_deadline, connection_from};
use audit_core::tree::proofs::{self, ProofReadError, StoredCheckpoint};
use audit_core::tree::published::{self, Published, TilePath};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Serialize;

use crate::auth;
use crate::errors::{ApiError, Detail};
use crate::state::{AppState, Runtime};

#[derive(Serialize)]
struct InclusionBody {
    leaf_index: u64,
    tree_size: u64,
    leaf_hash: String,
    inclusion_path: Vec<String>,
    /// The event's leaf content as stored now (README, "The leaf"): hashed by the
    /// client, it must lead to the signed root through `inclusion_path`.
    leaf_content: String,
}

#[derive(Serialize)]
struct ConsistencyBody {
    first: u64,
    second: u64,
    proof: Vec<String>,
}

/// `GET /api/checkpoint`: the latest signed checkpoint, the note byte for byte.
pub async fn latest_checkpoint(
    state: web::Data<AppState>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let runtime = state.runtime();
    auth::api_caller(&state.tokens, runtime.settings.auth.mode, &request)?;
    let checkpoint = with_connection(&runtime, async |client| {
        Ok(proofs::checkpoint(&*client, None).await?)
    })
    .await?
    .ok_or_else(no_checkpoint)?;
    Ok(HttpResponse::Ok()
        .content_type(ContentType::plaintext())
        .body(checkpoint.note))
}

/// `GET /api/event/{id}/proof?tree_size=N`.
pub async fn event_proof(
    state: web::Data<AppState>,
    request: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let (runtime, caller) = auth::api_reader(&state, &request)?;
    let id = id.parse::<i64>().map_err(|_| {
        invalid(
            "id",
            "must be an event id: the \"id\" of an event in a page",
        )
    })?;
    let tree_size = optional_size(request.query_string(), "tree_size")?;
    let found = with_connection(&runtime, async |client| {
        let client = &*client;
        let checkpoint = proofs::checkpoint(client, tree_size).await?;
        let Some(leaf) = proofs::find_leaf(client, id).await? else {
            return Ok(Found::NoEvent);
        };
        if !caller.read_scope().allows(&leaf.application) {
            // Not even its existence is told to a token that may not read it.
            return Ok(Found::NoEvent);
        }
        let (leaf_index, checkpoint) = match (leaf.leaf_index, checkpoint) {
            (None, _) => return Ok(Found::NotSealed),
            (Some(_), None) => return Ok(Found::NoCheckpoint),
            (Some(leaf_index), Some(checkpoint)) => (leaf_index, checkpoint),
        };
        let proof = proofs::inclusion(client, leaf_index, checkpoint.size).await?;
        Ok(match proof {
            Some(proof) => Found::Proof(proof, leaf.content),
            None => Found::NotCovered {
                leaf_index,
                checkpoint,
            },
        })
    })
    .await?;
    match found {
        Found::Proof(proof, content) => Ok(HttpResponse::Ok().json(InclusionBody {
            leaf_index: proof.leaf_index,
            tree_size: proof.tree_size,
            leaf_hash: STANDARD.encode(proof.leaf_hash),
            inclusion_path: encode_all(&proof.path),
            leaf_content: STANDARD.encode(content),
        })),
        Found::NoEvent => Err(ApiError::Missing {
            code: "event_not_found",
            message: format!("no event has the id {id}"),
        }),
        Found::NotSealed => Err(ApiError::Missing {
            code: "not_sealed_yet",
            message: format!("event {id} is not sealed yet: ask again after the next checkpoint"),
        }),
        Found::NoCheckpoint if tree_size.is_some() => Err(no_such_size("tree_size")),
        Found::NoCheckpoint => Err(no_checkpoint()),
        Found::NotCovered {
            leaf_index,
            checkpoint,
        } if tree_size.is_some() => Err(invalid(
            "tree_size",
            &format!(
                "the tree of {} events does not hold event {id} (its leaf is {leaf_index})",
                checkpoint.size
            ),
        )),
        // The latest checkpoint predates the event's leaf: sealed, not yet signed.
        Found::NotCovered { .. } => Err(ApiError::Missing {
            code: "not_sealed_yet",
            message: format!(
                "event {id} is not in a signed checkpoint yet: ask again after the next one"
            ),
        }),
    }
}

enum Found {
    NoEvent,
    NotSealed,
    NoCheckpoint,
    NotCovered {
        leaf_index: u64,
        checkpoint: StoredCheckpoint,
    },
    /// The proof, and the leaf content of the event as stored now.
    Proof(proofs::InclusionProof, Vec<u8>),
}

/// `GET /api/consistency?first=M&second=N`.
pub async fn consistency(
    state: web::Data<AppState>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let runtime = state.runtime();
    auth::api_caller(&state.tokens, runtime.settings.auth.mode, &request)?;
    let query = request.query_string();
    let first = optional_size(query, "first")?.ok_or_else(|| invalid("first", "is required"))?;
    let second = optional_size(query, "second")?.ok_or_else(|| invalid("second", "is required"))?;
    if first > second {
        return Err(invalid("first", "must not be larger than second"));
    }
    let proof = with_connection(&runtime, async |client| {
        let client = &*client;
        for (name, size) in [("second", second), ("first", first)] {
            if size > 0 && proofs::checkpoint(client, Some(size)).await?.is_none() {
                return Ok(Err(name));
            }
        }
        Ok(Ok(proofs::consistency(client, first, second).await?))
    })
    .await?
    .map_err(no_such_size)?
    .unwrap_or_default();
    Ok(HttpResponse::Ok().json(ConsistencyBody {
        first,
        second,
        proof: encode_all(&proof),
    }))
}

/// `GET /api/tile/{path}`: the tree in C2SP tlog-tiles layout, so that with `/api`
/// as its prefix (the checkpoint is at `/api/checkpoint`) any tiles client reads it.
/// Entry bundles name the ids of every application's events, so they need a token
/// that may read them all.
pub async fn tile(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let (runtime, caller) = auth::api_reader(&state, &request)?;
    let path = TilePath::parse(&path).map_err(|problem| invalid("path", problem))?;
    if path.level.is_none()
        && let (auth::Caller::Token(cached), Applications::Only(_)) = (&caller, caller.read_scope())
    {
        return Err(auth::forbidden(
            &cached.token.name,
            "read entry bundles (they name the events of every application)",
        ));
    }
    let found = with_connection(&runtime, async |client| {
        Ok(published::read(client, path).await?)
    })
    .await?;
    match found {
        Published::Bytes(bytes) => {
            let mut response = HttpResponse::Ok();
            response.content_type(ContentType::octet_stream());
            // A hash tile never changes (a partial one is a prefix of the full one);
            // an entry bundle is recomputed from the events as they are now.
            if path.level.is_some() {
                response.insert_header(("Cache-Control", "public, max-age=31536000, immutable"));
            }
            Ok(response.body(bytes))
        }
        Published::Missing => Err(ApiError::Missing {
            code: "tile_not_found",
            message: format!(
                "the tree has no tile {}: not that many events are sealed",
                path.to_path()
            ),
        }),
        Published::EventsGone(ids) => Err(ApiError::Missing {
            code: "events_gone",
            message: format!(
                "events {ids:?} of this bundle are no longer in the table: \
                 `audit-server verify` says whether they were pruned or deleted"
            ),
        }),
    }
}

/// Runs `work` on a pooled connection within the statement deadline. A stored tree
/// missing a tile it should have is a server fault (500), never the client's.
async fn with_connection<T>(
    runtime: &Runtime,
    work: impl AsyncFnOnce(&mut deadpool_postgres::Object) -> Result<T, ProofReadError>,
) -> Result<T, ApiError> {
    let client = connection_from(&runtime.repository.pool()).await?;
    let deadline = call_deadline(runtime.settings.postgres.statement_timeout());
    let outcome = bounded(client, deadline, timed_out, async |client| {
        match work(client).await {
            Ok(value) => Ok(Ok(value)),
            Err(ProofReadError::Storage(error)) => Err(error),
            Err(ProofReadError::Missing(missing)) => Ok(Err(missing)),
        }
    })
    .await?;
    outcome.map_err(|missing| ApiError::Internal(missing.into()))
}

fn timed_out() -> StorageError {
    StorageError::unavailable("the proof was not read within the statement timeout")
}

fn encode_all(hashes: &[Hash]) -> Vec<String> {
    hashes.iter().map(|hash| STANDARD.encode(hash)).collect()
}

/// A tree size parameter: absent, or a non-negative integer given once.
fn optional_size(query: &str, name: &'static str) -> Result<Option<u64>, ApiError> {
    let mut values = form_urlencoded::parse(query.as_bytes()).filter(|(key, _)| key == name);
    let Some((_, value)) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(invalid(name, "is given more than once"));
    }
    value
        .parse::<u64>()
        .map(Some)
        .map_err(|_| invalid(name, "must be a tree size: a non-negative integer"))
}

fn invalid(field: &str, problem: &str) -> ApiError {
    ApiError::InvalidQuery(vec![Detail {
        field: Some(field.to_owned()),
        problem: problem.to_owned(),
        ..Detail::default()
    }])
}

fn no_such_size(field: &str) -> ApiError {
    invalid(
        field,
        "no signed checkpoint has this tree size: use the size of a checkpoint",
    )
}

fn no_checkpoint() -> ApiError {
    ApiError::Missing {
        code: "no_checkpoint",
        message: "no checkpoint has been signed yet (integrity is off, or nothing is sealed yet)"
            .to_owned(),
    }
}
