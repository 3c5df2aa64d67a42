//! Server settings: built by clap from flags and environment in production, built in code
//! by tests. Nothing global: two differently configured servers can share a process.
//! ("config" is the domain's word for a stored document, so these are "settings".)

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;

pub const DEFAULT_BIND: &str = "127.0.0.1:8000";
pub const DEFAULT_DATA_DIR: &str = "./.keyward";

/// Where the data lives and which keys protect it: shared by every subcommand that
/// touches the database.
#[derive(Clone, Debug, clap::Args)]
pub struct StoreSettings {
    /// `postgres://…` or `sqlite://PATH?mode=rwc`. Unset: SQLite in the data directory.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Holds the default SQLite file and, in development, a generated key file.
    #[arg(long, env = "KEYWARD_DATA_DIR", default_value = DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
    /// The keyring: Fernet keys separated by commas; the first encrypts, all decrypt.
    #[arg(long = "encryption-key", env = "CONFIG_ENCRYPTION_KEY", hide_env_values = true, value_parser = parse_secret)]
    pub encryption_key: Option<SecretString>,
    /// Envelope encryption: each tenant's values under its own data key, wrapped by the
    /// keyring (api/src/keys/tenant.rs). Off by default: values stand under the keyring.
    #[arg(long, env = "KEYWARD_TENANT_KEYS", default_value_t = false)]
    pub tenant_keys: bool,
    /// Most database connections held open at once.
    #[arg(long, env = "KEYWARD_DB_MAX_CONNECTIONS", default_value_t = 16)]
    pub db_max_connections: u32,
    /// How long a request waits for a database connection before it is UNAVAILABLE.
    #[arg(long, env = "KEYWARD_DB_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub db_timeout: Duration,
}

impl StoreSettings {
    /// In-code defaults (no environment read), for tests and embedding.
    pub fn new(
        database_url: Option<String>,
        data_dir: PathBuf,
        encryption_key: Option<SecretString>,
    ) -> Self {
        Self {
            database_url,
            data_dir,
            encryption_key,
            tenant_keys: false,
            db_max_connections: 16,
            db_timeout: Duration::from_secs(5),
        }
    }
}

/// Everything `keyward serve` needs.
#[derive(Clone, Debug, clap::Args)]
pub struct Settings {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, env = "KEYWARD_BIND", default_value = DEFAULT_BIND)]
    pub bind: SocketAddr,
    #[command(flatten)]
    pub store: StoreSettings,
    /// A break-glass bearer token with the ADMIN role.
    #[arg(long, env = "KEYWARD_ADMIN_TOKEN", hide_env_values = true, value_parser = parse_secret)]
    pub admin_token: Option<SecretString>,
    /// Extra hosts (`host` or `host:port`) provider base_urls may point at.
    #[arg(long, env = "KEYWARD_PROVIDER_HOSTS", value_delimiter = ',')]
    pub provider_hosts: Vec<String>,
    /// Server environment variables that `${NAME}` config values may resolve to.
    #[arg(long, env = "KEYWARD_ENV_ALLOW", value_delimiter = ',')]
    pub env_allow: Vec<String>,
    #[command(flatten)]
    pub limits: Limits,
    /// Reverse proxies (addresses or CIDR blocks) whose `X-Forwarded-For` names the client:
    /// the throttle and the audit trail then key on the client, not on the proxy. None by
    /// default: the header is ignored, so a client cannot choose its own address.
    #[arg(long, env = "KEYWARD_TRUSTED_PROXIES", value_delimiter = ',', value_parser = parse_net)]
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Origins allowed to call the API from a browser (CORS). None by default.
    #[arg(long, env = "KEYWARD_CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Vec<String>,
    /// How long in-flight requests and streams get to finish after SIGTERM.
    #[arg(long, env = "KEYWARD_SHUTDOWN_GRACE", default_value = "20s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,
    /// Answer verified bearer tokens from memory instead of looking each request's token up
    /// in the database (PostgreSQL only; SQLite always looks up). `revokeApiToken` still
    /// takes effect on the token's next request in every process: it waits for the others
    /// to acknowledge (api/src/auth/cache.rs). `--token-cache=false` turns it off.
    #[arg(long, env = "KEYWARD_TOKEN_CACHE", default_value_t = true, action = clap::ArgAction::Set)]
    pub token_cache: bool,
}

/// Refusals that keep one client from hurting the others.
#[derive(Clone, Debug, clap::Args)]
pub struct Limits {
    /// Largest request body, in bytes; also the largest WebSocket message. Over it: 413.
    #[arg(long, env = "KEYWARD_MAX_BODY_BYTES", default_value_t = 4 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Largest configData document, in bytes of JSON.
    #[arg(long, env = "KEYWARD_MAX_CONFIG_BYTES", default_value_t = 1024 * 1024)]
    pub max_config_bytes: usize,
    /// Deepest query nesting (fields within fields, fragments followed). Text nested
    /// deeper than this plus 64 (at least 128) is refused before it is parsed.
    #[arg(long, env = "KEYWARD_MAX_QUERY_DEPTH", default_value_t = 32)]
    pub max_query_depth: usize,
    /// Most fields one operation may select: every alias, repeat and `__typename` counts,
    /// with fragment spreads expanded. Also bounds directives per operation, and fragment
    /// spreads (four times this).
    #[arg(long, env = "KEYWARD_MAX_QUERY_COMPLEXITY", default_value_t = 1000)]
    pub max_query_complexity: usize,
    /// Most operations in one batched request.
    #[arg(long, env = "KEYWARD_MAX_BATCH", default_value_t = 10)]
    pub max_batch: usize,
    /// Longest a request may take, reading its body included (streams excepted): a body
    /// still arriving then gets 408, a request still running 503 UNAVAILABLE.
    #[arg(long, env = "KEYWARD_REQUEST_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub request_timeout: Duration,
    /// How long a WebSocket may stay open before its `connection_init`: then it is closed
    /// with 4408.
    #[arg(long, env = "KEYWARD_WS_INIT_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub ws_init_timeout: Duration,
    /// Failed authentications one client IP may make per minute before it is throttled.
    #[arg(long, env = "KEYWARD_AUTH_FAILURES_PER_MINUTE", default_value_t = 60)]
    pub auth_failures_per_minute: u32,
    /// Longest an AI provider may take to answer (streams: between chunks).
    #[arg(long, env = "KEYWARD_PROVIDER_TIMEOUT", default_value = "120s", value_parser = parse_duration)]
    pub provider_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 4 * 1024 * 1024,
            max_config_bytes: 1024 * 1024,
            max_query_depth: 32,
            max_query_complexity: 1000,
            max_batch: 10,
            request_timeout: Duration::from_secs(30),
            ws_init_timeout: Duration::from_secs(10),
            auth_failures_per_minute: 60,
            provider_timeout: Duration::from_secs(120),
        }
    }
}

impl Settings {
    /// In-code defaults (no environment read): tests start from here and change fields.
    pub fn new(store: StoreSettings) -> Self {
        Self {
            bind: DEFAULT_BIND.parse().expect("valid default"),
            store,
            admin_token: None,
            provider_hosts: Vec::new(),
            env_allow: Vec::new(),
            limits: Limits::default(),
            cors_origins: Vec::new(),
            trusted_proxies: Vec::new(),
            shutdown_grace: Duration::from_secs(20),
            token_cache: true,
        }
    }
}

/// `10.0.0.0/8`, or a single address (`10.0.0.7`, `::1`).
fn parse_net(s: &str) -> Result<ipnet::IpNet, String> {
    let s = s.trim();
    s.parse::<ipnet::IpNet>()
        .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("{s:?} is not an IP address or CIDR block"))
}

fn parse_secret(s: &str) -> Result<SecretString, String> {
    Ok(SecretString::from(s))
}

/// `250ms`, `5s`, `2m`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (number, unit) = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .map_or((s, "s"), |i| s.split_at(i));
    let n: f64 = number
        .parse()
        .map_err(|_| format!("`{s}` is not a duration like 5s or 250ms"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("`{s}` has an unknown unit (use ms, s, m or h)")),
    };
    // Found by fuzzing (api/fuzz, text_inputs): `from_secs_f64` panics on a value too
    // large for a Duration, so `KEYWARD_REQUEST_TIMEOUT=99999999999999999999h` crashed.
    Duration::try_from_secs_f64(secs).map_err(|_| format!("`{s}` is too long a duration"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_in_common_units() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("7").unwrap(), Duration::from_secs(7));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5y").is_err());
        assert!(parse_duration("250666666666666666666666666ms").is_err());
        assert!(parse_duration("1e400").is_err());
        assert!(parse_duration(&"9".repeat(400)).is_err());
    }
}
