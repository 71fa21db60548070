//! `audit-server token create|list|revoke`: token management on the command line,
//! against the configured database, through the same store as `/admin/tokens`.

use argh::FromArgs;
use audit_core::access::{self, Actor, RevokeOutcome, TokenListing, TokenRequest};
use audit_core::database;
use time::OffsetDateTime;

use crate::settings::Settings;

/// Manage access tokens in the configured database.
#[derive(FromArgs)]
#[argh(subcommand, name = "token")]
pub struct TokenArguments {
    #[argh(subcommand)]
    action: TokenAction,
}

#[derive(FromArgs)]
#[argh(subcommand)]
enum TokenAction {
    Create(CreateArguments),
    List(ListArguments),
    Revoke(RevokeArguments),
}

/// Create a token; its secret is printed once, alone on the last line.
#[derive(FromArgs)]
#[argh(subcommand, name = "create")]
struct CreateArguments {
    /// unique name: letters, digits, '.', '_', '-'
    #[argh(option)]
    name: String,
    /// applications it may write, comma-separated; * for all
    #[argh(option)]
    write: Option<String>,
    /// applications it may read, comma-separated; * for all
    #[argh(option)]
    read: Option<String>,
    /// may manage tokens and reload the configuration
    #[argh(switch)]
    admin: bool,
    /// lifetime, e.g. 90d or 12h; default: until revoked
    #[argh(option)]
    expires: Option<String>,
}

/// List tokens: names, scopes, created, expires, last used; never secrets.
#[derive(FromArgs)]
#[argh(subcommand, name = "list")]
struct ListArguments {}

/// Revoke a token by name; every server refuses it within auth.refresh_interval_ms.
#[derive(FromArgs)]
#[argh(subcommand, name = "revoke")]
struct RevokeArguments {
    #[argh(positional)]
    name: String,
}

pub async fn run(arguments: TokenArguments, settings: &Settings) -> anyhow::Result<()> {
    let pool = database::build_pool(&settings.postgres)?;
    match arguments.action {
        TokenAction::Create(create) => {
            let request = TokenRequest {
                name: create.name,
                write: split_list(create.write.as_deref()),
                read: split_list(create.read.as_deref()),
                admin: create.admin,
                expires_in: create.expires,
            };
            let token = request.into_new_token(OffsetDateTime::now_utc())?;
            let secret = access::create_token(&pool, &token, &Actor::Cli).await?;
            println!(
                "created token {} (write: {}; read: {}; admin: {}; expires: {})",
                token.name,
                token.write.to_list().join(","),
                token.read.to_list().join(","),
                token.admin,
                timestamp(token.expires_at),
            );
            println!("the secret below is shown only now; it is stored as a hash only:");
            println!("{}", secret.expose());
        }
        TokenAction::List(_) => {
            for token in access::list_tokens(&pool).await? {
                println!("{}", listing_line(&token));
            }
        }
        TokenAction::Revoke(revoke) => {
            match access::revoke_token(&pool, &revoke.name, &Actor::Cli).await? {
                RevokeOutcome::Revoked => println!("revoked token {}", revoke.name),
                RevokeOutcome::AlreadyRevoked => {
                    println!("token {} was already revoked", revoke.name)
                }
                RevokeOutcome::Unknown => anyhow::bail!("no token is named {:?}", revoke.name),
            }
        }
    }
    Ok(())
}

fn split_list(list: Option<&str>) -> Vec<String> {
    list.into_iter()
        .flat_map(|list| list.split(','))
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .map(str::to_owned)
        .collect()
}

fn listing_line(token: &TokenListing) -> String {
    let state = match &token.revoked_at {
        Some(at) => format!("revoked {}", timestamp(Some(*at))),
        None => "active".to_owned(),
    };
    format!(
        "{}\twrite={}\tread={}\tadmin={}\tcreated={} by {}\texpires={}\tlast_used={}\t{state}",
        token.name,
        token.write.join(","),
        token.read.join(","),
        token.admin,
        timestamp(Some(token.created_at)),
        token.created_by,
        timestamp(token.expires_at),
        timestamp(token.last_used_at),
    )
}

fn timestamp(at: Option<OffsetDateTime>) -> String {
    access::rfc3339(at).unwrap_or_else(|| "never".to_owned())
}
