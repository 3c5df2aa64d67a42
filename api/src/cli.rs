//! The `keyward` command line. Each subcommand is a few lines over the library.

use std::io::{IsTerminal, Read};
use std::sync::Arc;

use clap::{CommandFactory, Parser, Subcommand};
use secrecy::{ExposeSecret, SecretString};

use crate::crypto::{self, Keyring};
use crate::settings::{Settings, StoreSettings};
use crate::telemetry::{self, LogFormat};

#[derive(Parser, Debug)]
#[command(
    name = "keyward",
    version = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("KEYWARD_GIT_COMMIT"), ")"),
    about = "An encrypted store for AI-provider configs, served over GraphQL"
)]
pub struct Cli {
    /// Log format: text for people, json for machines.
    #[arg(long, env = "KEYWARD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run migrations, then serve HTTP.
    Serve(Box<Settings>),
    /// Run pending migrations and exit.
    Migrate(StoreSettings),
    /// Print a fresh Fernet key (URL-safe base64 of 32 random bytes).
    Keygen,
    /// App-side encryption: print `enc:<fernet token>` for VALUE (or standard input).
    Encrypt(KeyArgs),
    /// Print the plaintext of an `enc:` VALUE (or standard input).
    Decrypt(KeyArgs),
    /// Seal VALUE (or standard input) to a server's public key: prints `sealed:<keyId>:<base64>`.
    Seal(SealArgs),
    /// Re-encrypt every stored value under the primary key (resumable; safe while serving).
    Rotate(StoreSettings),
    /// Print the fingerprint of each key of CONFIG_ENCRYPTION_KEY, as keyringStatus shows them.
    Fingerprint(FingerprintArgs),
    /// Manage API tokens directly in the database.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Print the GraphQL schema (SDL).
    Schema,
    /// Print shell completions.
    Completions { shell: clap_complete::Shell },
}

#[derive(clap::Args, Debug)]
pub struct KeyArgs {
    /// A Fernet key, or several separated by commas (the first encrypts, all decrypt).
    #[arg(long, env = "CONFIG_ENCRYPTION_KEY", hide_env_values = true)]
    pub key: String,
    pub value: Option<String>,
}

#[derive(clap::Args, Debug)]
pub struct FingerprintArgs {
    /// Fernet keys separated by commas.
    #[arg(long, env = "CONFIG_ENCRYPTION_KEY", hide_env_values = true)]
    pub key: String,
}

#[derive(clap::Args, Debug)]
pub struct SealArgs {
    /// The Keyward server, e.g. http://127.0.0.1:8000.
    #[arg(long, env = "KEYWARD_SERVER")]
    pub server: String,
    /// A bearer token for the server.
    #[arg(long, env = "KEYWARD_TOKEN", hide_env_values = true)]
    pub token: String,
    pub value: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Create an API token and print its secret once.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long, value_enum)]
        role: RoleArg,
        #[arg(long)]
        tenant: Option<String>,
        #[command(flatten)]
        store: StoreSettings,
    },
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum RoleArg {
    Admin,
    Member,
}

/// Parses the command line and runs the command.
pub async fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let log = telemetry::StderrLines::start();
    telemetry::init(cli.log_format, telemetry::DEFAULT_FILTER, log.clone());
    let outcome = command(cli).await;
    log.flush();
    outcome
}

async fn command(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(settings) => {
            let app = crate::Application::build(*settings).await?;
            app.run_until_stopped().await?;
        }
        Command::Migrate(store) => {
            let db = crate::db::connect(&store).await?;
            crate::db::migrate(&db).await?;
            eprintln!(
                "migrations are up to date ({})",
                crate::db::backend_name(&db)
            );
        }
        Command::Rotate(store) => {
            let keyring = crate::startup::load_keyring(&store)?;
            let db = crate::db::connect(&store).await?;
            crate::db::migrate(&db).await?;
            let by = crate::auth::Principal {
                name: "cli:keyward rotate".into(),
                ..crate::auth::Principal::break_glass_admin()
            };
            let meta = crate::auth::RequestMeta {
                request_id: uuid::Uuid::now_v7().to_string(),
                ..Default::default()
            };
            let keys = crate::keys::TenantKeys::new(Arc::new(keyring), store.tenant_keys);
            let done = crate::keys::service::rotate(&db, &keys, None, &by, &meta, |configs, c| {
                eprintln!(
                    "{configs} configs: {} re-encrypted, {} already current, {} failed",
                    c.reencrypted, c.already_current, c.failed
                );
            })
            .await?;
            let counts = done.values;
            println!(
                "reencrypted={} alreadyCurrent={} failed={} rewrappedKeys={}",
                counts.reencrypted, counts.already_current, counts.failed, done.rewrapped_keys
            );
            if counts.failed > 0 || done.unreadable_keys > 0 {
                anyhow::bail!(
                    "{} values and {} tenant data keys could not be opened by any key of the keyring",
                    counts.failed,
                    done.unreadable_keys
                );
            }
        }
        Command::Fingerprint(args) => {
            let keyring = Keyring::parse(&SecretString::from(args.key))?;
            for (i, f) in keyring.fingerprints().iter().enumerate() {
                println!("{i} {f}");
            }
        }
        Command::Keygen => println!("{}", Keyring::generate_key().expose_secret()),
        Command::Encrypt(args) => {
            let keyring = Keyring::parse(&SecretString::from(args.key))?;
            let value = SecretString::from(value_or_stdin(args.value)?);
            println!("{}", crypto::encrypt_value(&keyring, value.expose_secret()));
        }
        Command::Decrypt(args) => {
            let keyring = Keyring::parse(&SecretString::from(args.key))?;
            let value = value_or_stdin(args.value)?;
            let plain = crypto::decrypt_value(&keyring, value.trim()).map_err(|_| {
                anyhow::anyhow!("the value is not an enc: token these keys can decrypt")
            })?;
            println!("{}", plain.expose_secret());
        }
        Command::Seal(args) => {
            let value = SecretString::from(value_or_stdin(args.value)?);
            println!(
                "{}",
                seal_remote(&args.server, &args.token, value.expose_secret()).await?
            );
        }
        Command::Token {
            command:
                TokenCommand::Create {
                    name,
                    role,
                    tenant,
                    store,
                },
        } => {
            let db = crate::db::connect(&store).await?;
            crate::db::migrate(&db).await?;
            let role = match role {
                RoleArg::Admin => entity::Role::Admin,
                RoleArg::Member => entity::Role::Member,
            };
            let new = crate::auth::token::NewToken { name, role, tenant };
            let txn = sea_orm::TransactionTrait::begin(&db).await?;
            let (row, secret) = crate::auth::token::create(&txn, new).await?;
            let meta = crate::auth::RequestMeta {
                request_id: uuid::Uuid::now_v7().to_string(),
                ..Default::default()
            };
            crate::audit::AuditEntry::by_name(
                entity::AuditAction::TokenCreate,
                "cli:keyward token create",
                &meta,
            )
            .tenant(row.tenant.clone())
            .detail(serde_json::json!({ "tokenId": row.id, "name": row.name, "role": row.role }))
            .record(&txn)
            .await?;
            txn.commit().await?;
            eprintln!(
                "created token {} ({:?}, tenant {}); the secret is shown once:",
                row.name,
                row.role,
                row.tenant.as_deref().unwrap_or("-")
            );
            println!("{}", secret.expose_secret());
        }
        Command::Schema => print!("{}", crate::schema::sdl()),
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "keyward",
                &mut std::io::stdout(),
            );
        }
    }
    Ok(())
}

fn value_or_stdin(value: Option<String>) -> anyhow::Result<String> {
    match value {
        Some(v) => Ok(v),
        None => {
            let mut stdin = std::io::stdin();
            if stdin.is_terminal() {
                eprintln!("reading the value from standard input (end with Ctrl-D)");
            }
            let mut buf = String::new();
            stdin.read_to_string(&mut buf)?;
            Ok(buf
                .strip_suffix('\n')
                .map(|s| s.strip_suffix('\r').unwrap_or(s))
                .unwrap_or(&buf)
                .to_owned())
        }
    }
}

/// Fetches the server's public key and seals locally: the value never leaves in clear.
async fn seal_remote(server: &str, token: &str, value: &str) -> anyhow::Result<String> {
    let url = format!("{}/graphql", server.trim_end_matches('/'));
    let body = serde_json::json!({ "query": "{ encryptionKey { keyId publicKey } }" });
    let res: serde_json::Value = reqwest::Client::new()
        .post(url)
        .bearer_auth(token)
        .json(&body)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let key = res["data"]["encryptionKey"]["publicKey"]
        .as_str()
        .ok_or_else(|| {
            anyhow::anyhow!("the server did not return encryptionKey: {}", res["errors"])
        })?;
    let public = keyward_seal::parse_public_key(key)
        .map_err(|e| anyhow::anyhow!("the server's encryptionKey: {e}"))?;
    Ok(crypto::seal(&public, value.as_bytes()))
}
