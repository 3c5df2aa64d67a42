//! Provider clients: turn a decrypted provider entry into an HTTP client and relay chat turns.
//!
//! The only HTTP the server makes besides serving its own. Never logs, prints or returns a
//! key: a key lives in a [`SecretString`], leaves it only for the one header its provider
//! expects, and only to a host on the allowlist (redirects are not followed). Upstream
//! bodies may echo a key back, so they never reach an error message or a log line; only
//! status codes do.
//!
//! One file per provider wire format ([`anthropic`], [`openai`], [`echo`]); the sending,
//! retrying and streaming they share is in [`upstream`] and [`retry`]; the host allowlist is
//! in [`allow`].

mod allow;
mod anthropic;
mod echo;
mod openai;
mod retry;
mod upstream;

use std::{fmt, sync::Arc, time::Duration};

use futures::stream::BoxStream;
use reqwest::Url;
use secrecy::SecretString;
use serde_json::{Map, Value};

use allow::{HostAllowlist, UrlRefused};
use upstream::{Upstream, Wire};

pub use allow::BUILT_IN_HOSTS;

/// How provider calls are made. Built in code (from `KEYWARD_PROVIDER_HOSTS`,
/// `KEYWARD_ENV_ALLOW`…) and passed in; nothing here reads the environment by itself.
#[derive(Clone, Debug)]
pub struct ProviderSettings {
    /// Extra allowed hosts from KEYWARD_PROVIDER_HOSTS: "host" (any port) or "host:port" (only that port).
    /// api.anthropic.com and api.openai.com are always allowed (https, any port).
    pub extra_hosts: Vec<String>,
    /// Names from KEYWARD_ENV_ALLOW that `${NAME}` values may resolve to.
    pub env_allow: Vec<String>,
    /// Time allowed to open a connection. Default 5 s.
    pub connect_timeout: Duration,
    /// A whole non-streamed call; for a stream, the time to the response head and then the
    /// longest silence between events. Default 120 s.
    pub request_timeout: Duration,
    /// Retries after a 408/429/5xx answer or a failure to connect. Default 2 (3 attempts).
    pub max_retries: u32,
}

impl Default for ProviderSettings {
    fn default() -> Self {
        Self {
            extra_hosts: Vec::new(),
            env_allow: Vec::new(),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(120),
            max_retries: 2,
        }
    }
}

impl ProviderSettings {
    /// Splits a comma-separated setting (`KEYWARD_PROVIDER_HOSTS`, `KEYWARD_ENV_ALLOW`) into
    /// its trimmed, non-empty entries.
    pub fn split_list(list: &str) -> Vec<String> {
        list.split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(str::to_owned)
            .collect()
    }
}

type EnvLookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Cheap to clone: one shared reqwest client (rustls, no redirects) and the settings.
#[derive(Clone)]
pub struct Providers {
    inner: Arc<Inner>,
}

#[derive(Clone)]
struct Inner {
    http: reqwest::Client,
    settings: ProviderSettings,
    hosts: HostAllowlist,
    env: EnvLookup,
}

impl fmt::Debug for Providers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Providers")
            .field("settings", &self.inner.settings)
            .finish_non_exhaustive()
    }
}

impl Providers {
    pub fn new(settings: ProviderSettings) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(settings.connect_timeout)
            // A redirect could carry the key to a host the allowlist never saw.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("keyward/", env!("CARGO_PKG_VERSION")))
            .build()
            // Only fails when the TLS backend cannot start, which no request could survive.
            .expect("the HTTP client's TLS backend initialises");
        let hosts = HostAllowlist::new(&settings.extra_hosts);
        let env: EnvLookup = Arc::new(|name| std::env::var(name).ok());
        Self {
            inner: Arc::new(Inner {
                http,
                settings,
                hosts,
                env,
            }),
        }
    }

    /// Replaces where `${NAME}` values are looked up (the process environment by default),
    /// e.g. with a map in tests. `KEYWARD_ENV_ALLOW` still decides which names may be read.
    pub fn with_env_lookup(
        mut self,
        lookup: impl Fn(&str) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        Arc::make_mut(&mut self.inner).env = Arc::new(lookup);
        self
    }

    pub fn settings(&self) -> &ProviderSettings {
        &self.inner.settings
    }

    /// Checks a provider entry as stored (sealed: secrets are still `enc:` strings) without
    /// decrypting: module known, `config` an object, `base_url` (if any, and not an
    /// environment reference) parses and its host is allowed, `max_tokens` a positive
    /// integer, `model` and `system` plain strings. Used at config write time. Errors name paths relative to the entry
    /// (`config.base_url: …`); see [`ProviderError::in_entry`].
    pub fn check_entry(&self, entry: &Value) -> Result<(), ProviderError> {
        let module = Module::of(entry)?;
        let config = config_of(entry)?;
        if let Some(base_url) = config.get("base_url") {
            match base_url {
                Value::Null => {}
                Value::String(s) if is_env_reference(s) || s.starts_with("enc:") => {}
                Value::String(s) if module != Module::Echo => {
                    self.inner
                        .hosts
                        .check_base_url(s)
                        .map_err(|why| url_refused(why, true))?;
                }
                Value::String(_) => {}
                _ => return Err(bad("config.base_url", "must be a string")),
            }
        }
        match config.get("max_tokens") {
            Some(Value::String(s)) if is_env_reference(s) => {}
            Some(Value::Null) | None => {}
            Some(value) => {
                max_tokens_of(value)?;
            }
        }
        // Same rules as at session creation, so a config that can never work is refused now.
        literal_string(config, "model")?;
        literal_string(config, "system")?;
        Ok(())
    }

    /// Builds a client from a DECRYPTED provider entry
    /// `{"module": ..., "config": {"api_key", "model", "base_url", "max_tokens", "system", "temperature"}}`.
    ///
    /// Resolves `${NAME}` string values (whole-string form only) from the environment ONLY
    /// when NAME is in `env_allow`; any other reference anywhere in `config` is
    /// [`ProviderError::BadConfig`] naming the path, never the value. `model` and `system`
    /// may not be references at all: a client sees them again (the session's model, the
    /// assistant's replies). Refuses a `base_url` whose host is not allowed.
    /// `model_override` wins over `config.model`.
    pub fn client(
        &self,
        entry: &Value,
        model_override: Option<&str>,
    ) -> Result<ProviderClient, ProviderError> {
        let module = Module::of(entry)?;
        let config = config_of(entry)?;
        check_env_references(config, &self.inner.settings.env_allow)?;

        let model = match model_override.map(str::trim).filter(|m| !m.is_empty()) {
            Some(model) => model.to_owned(),
            None => literal_string(config, "model")?
                .unwrap_or_else(|| module.default_model().to_owned()),
        };
        if module == Module::Echo {
            return Ok(ProviderClient {
                module,
                model,
                backend: Backend::Echo,
            });
        }

        let api_key = self.api_key(config)?;
        let base = self.base_url(config, module)?;
        let max_tokens = match config.get("max_tokens") {
            None | Some(Value::Null) => None,
            Some(Value::String(_)) => self
                .resolved(config, "max_tokens")?
                .map(|Resolved { text, .. }| max_tokens_of(&Value::String(text)))
                .transpose()?,
            Some(value) => Some(max_tokens_of(value)?),
        };
        let system = literal_string(config, "system")?;
        let temperature = match config.get("temperature") {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => n.as_f64(),
            Some(_) => return Err(bad("config.temperature", "must be a number")),
        };

        let wire: Arc<dyn Wire> = match module {
            Module::Anthropic => Arc::new(anthropic::Anthropic {
                endpoint: anthropic::Anthropic::endpoint(&base),
                api_key,
                max_tokens: max_tokens.unwrap_or(anthropic::DEFAULT_MAX_TOKENS),
                system,
                temperature,
            }),
            Module::OpenAi => Arc::new(openai::OpenAi {
                endpoint: openai::OpenAi::endpoint(&base),
                api_key,
                max_tokens,
                system,
                temperature,
            }),
            Module::Echo => unreachable!("handled above"),
        };
        let upstream = Upstream {
            http: self.inner.http.clone(),
            request_timeout: self.inner.settings.request_timeout,
            max_retries: self.inner.settings.max_retries,
        };
        Ok(ProviderClient {
            module,
            model,
            backend: Backend::Http { wire, upstream },
        })
    }

    fn api_key(&self, config: &Map<String, Value>) -> Result<SecretString, ProviderError> {
        let Some(Resolved { text, .. }) = self.resolved(config, "api_key")? else {
            return Err(bad("config.api_key", "is missing"));
        };
        if text.is_empty() {
            return Err(bad("config.api_key", "is empty"));
        }
        if text.starts_with("enc:") {
            return Err(bad("config.api_key", "is still encrypted"));
        }
        let key = SecretString::from(text);
        // Fail now, not at the first message, on a key no header can carry.
        upstream::secret_header("", &key)?;
        Ok(key)
    }

    fn base_url(&self, config: &Map<String, Value>, module: Module) -> Result<Url, ProviderError> {
        match self.resolved(config, "base_url")? {
            Some(Resolved { text, from_env }) if !text.trim().is_empty() => self
                .inner
                .hosts
                .check_base_url(&text)
                .map_err(|why| url_refused(why, !from_env)),
            _ => Ok(Url::parse(module.default_base_url()).expect("built-in base URLs parse")),
        }
    }

    /// `config[key]` as a string, with a `${NAME}` reference resolved. `None` when absent or
    /// null. The environment check has already run, so a reference here is allowed.
    fn resolved(
        &self,
        config: &Map<String, Value>,
        key: &str,
    ) -> Result<Option<Resolved>, ProviderError> {
        let path = format!("config.{key}");
        match config.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => match env_reference(s) {
                Some(name) => match (self.inner.env)(name) {
                    Some(text) => Ok(Some(Resolved {
                        text,
                        from_env: true,
                    })),
                    None => Err(bad(
                        &path,
                        "refers to an environment variable that is not set on the server",
                    )),
                },
                None => Ok(Some(Resolved {
                    text: s.clone(),
                    from_env: false,
                })),
            },
            Some(_) => Err(bad(&path, "must be a string")),
        }
    }
}

struct Resolved {
    text: String,
    from_env: bool,
}

/// A provider module, as named in `configData.providers[i].module`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Module {
    Anthropic,
    OpenAi,
    Echo,
}

impl Module {
    const NAMES: [&'static str; 3] = ["provider-anthropic", "provider-openai", "provider-echo"];

    fn of(entry: &Value) -> Result<Self, ProviderError> {
        let Some(entry) = entry.as_object() else {
            return Err(ProviderError::BadConfig(format!(
                "{ENTRY}: must be an object"
            )));
        };
        match entry.get("module").and_then(Value::as_str) {
            Some("provider-anthropic") => Ok(Module::Anthropic),
            Some("provider-openai") => Ok(Module::OpenAi),
            Some("provider-echo") => Ok(Module::Echo),
            Some(_) => Err(bad(
                "module",
                &format!(
                    "is not a known provider module (one of {})",
                    Self::NAMES.join(", ")
                ),
            )),
            None => Err(bad("module", "is missing")),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Module::Anthropic => "provider-anthropic",
            Module::OpenAi => "provider-openai",
            Module::Echo => "provider-echo",
        }
    }

    fn default_model(self) -> &'static str {
        match self {
            Module::Anthropic => anthropic::DEFAULT_MODEL,
            Module::OpenAi => openai::DEFAULT_MODEL,
            Module::Echo => echo::DEFAULT_MODEL,
        }
    }

    fn default_base_url(self) -> &'static str {
        match self {
            Module::Anthropic => anthropic::DEFAULT_BASE_URL,
            Module::OpenAi | Module::Echo => openai::DEFAULT_BASE_URL,
        }
    }
}

static EMPTY: std::sync::LazyLock<Map<String, Value>> = std::sync::LazyLock::new(Map::new);

fn config_of(entry: &Value) -> Result<&Map<String, Value>, ProviderError> {
    match entry.get("config") {
        None | Some(Value::Null) => Ok(&EMPTY),
        Some(Value::Object(config)) => Ok(config),
        Some(_) => Err(bad("config", "must be an object")),
    }
}

/// A string field that must be written out, not referenced: its value is shown to clients.
fn literal_string(config: &Map<String, Value>, key: &str) -> Result<Option<String>, ProviderError> {
    let path = format!("config.{key}");
    match config.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if is_env_reference(s) => Err(bad(
            &path,
            "cannot be an environment reference, because clients see this value",
        )),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(bad(&path, "must be a string")),
    }
}

fn max_tokens_of(value: &Value) -> Result<u32, ProviderError> {
    let n = match value {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse::<u64>().ok(),
        _ => None,
    };
    n.filter(|n| *n > 0)
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| bad("config.max_tokens", "must be a positive integer"))
}

/// Every `${NAME}` anywhere under `value` must name an allowed variable, whether or not the
/// provider uses that field: a config that asks for more than it may have is refused whole.
fn check_env_references(
    config: &Map<String, Value>,
    allow: &[String],
) -> Result<(), ProviderError> {
    fn walk(value: &Value, path: &mut String, allow: &[String]) -> Result<(), ProviderError> {
        let mut child = |suffix: std::fmt::Arguments<'_>, item: &Value| {
            let len = path.len();
            std::fmt::Write::write_fmt(path, suffix).ok();
            let result = walk(item, path, allow);
            path.truncate(len);
            result
        };
        match value {
            Value::String(s) => match env_reference(s) {
                Some(name) if !allow.iter().any(|a| a.trim() == name) => Err(bad(
                    path,
                    "refers to an environment variable that KEYWARD_ENV_ALLOW does not allow",
                )),
                _ => Ok(()),
            },
            Value::Array(items) => items
                .iter()
                .enumerate()
                .try_for_each(|(i, item)| child(format_args!("[{i}]"), item)),
            Value::Object(map) => map
                .iter()
                .try_for_each(|(key, item)| child(format_args!(".{key}"), item)),
            _ => Ok(()),
        }
    }
    config
        .iter()
        .try_for_each(|(key, item)| walk(item, &mut format!("config.{key}"), allow))
}

/// `${NAME}` → `NAME`: the same rule the encryption walk uses to leave references alone.
fn env_reference(s: &str) -> Option<&str> {
    let name = s.strip_prefix("${")?.strip_suffix('}')?;
    let mut chars = name.chars();
    let valid = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    valid.then_some(name)
}

fn is_env_reference(s: &str) -> bool {
    env_reference(s).is_some()
}

/// How messages about the entry as a whole name it (see [`ProviderError::in_entry`]).
const ENTRY: &str = "the provider entry";

fn bad(path: &str, why: &str) -> ProviderError {
    ProviderError::BadConfig(format!("{path}: {why}"))
}

/// Names the host only when the URL was written in the config, not read from the environment.
fn url_refused(why: UrlRefused, may_name_host: bool) -> ProviderError {
    match why {
        UrlRefused::HostNotAllowed { host } if may_name_host => bad(
            "config.base_url",
            &format!(
                "host {host} is not allowed (allowed: {} and KEYWARD_PROVIDER_HOSTS)",
                BUILT_IN_HOSTS.join(", ")
            ),
        ),
        why => bad("config.base_url", &why.to_string()),
    }
}

/// A client for one provider entry. Holds the key as a [`SecretString`]; `Debug` shows
/// the module, model and endpoint, never the key. Cloning shares the key; it is not copied.
#[derive(Clone)]
pub struct ProviderClient {
    module: Module,
    model: String,
    backend: Backend,
}

#[derive(Clone)]
enum Backend {
    Echo,
    Http {
        wire: Arc<dyn Wire>,
        upstream: Upstream,
    },
}

impl fmt::Debug for ProviderClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("ProviderClient");
        s.field("module", &self.module.name())
            .field("model", &self.model);
        if let Backend::Http { wire, .. } = &self.backend {
            s.field("endpoint", &wire.endpoint().as_str())
                .field("api_key", &"[REDACTED]");
        }
        s.finish()
    }
}

impl ProviderClient {
    /// `"provider-anthropic"`, `"provider-openai"` or `"provider-echo"`.
    pub fn module(&self) -> &'static str {
        self.module.name()
    }

    /// The model every call uses: the override, else the config's, else the module's default.
    pub fn model(&self) -> Option<&str> {
        Some(&self.model)
    }

    /// One non-streamed turn: sends the whole transcript, returns the assistant's text.
    #[tracing::instrument(skip_all, fields(provider = self.module(), model = %self.model, turns = transcript.len()))]
    pub async fn send(&self, transcript: &[Turn]) -> Result<String, ProviderError> {
        match &self.backend {
            Backend::Echo => Ok(echo::reply(transcript)),
            Backend::Http { wire, upstream } => {
                non_empty(transcript)?;
                upstream.send(wire.as_ref(), &self.model, transcript).await
            }
        }
    }

    /// A streamed turn in the provider's own streaming mode (`"stream": true`, server-sent
    /// events): yields text deltas in order; they concatenate to the reply. Stops after the
    /// first error. Dropping the stream drops the connection, cancelling the upstream request.
    #[tracing::instrument(skip_all, fields(provider = self.module(), model = %self.model, turns = transcript.len()))]
    pub async fn stream(
        &self,
        transcript: &[Turn],
    ) -> Result<BoxStream<'static, Result<String, ProviderError>>, ProviderError> {
        match &self.backend {
            Backend::Echo => Ok(echo::stream(transcript)),
            Backend::Http { wire, upstream } => {
                non_empty(transcript)?;
                upstream
                    .stream(Arc::clone(wire), &self.model, transcript)
                    .await
            }
        }
    }
}

fn non_empty(transcript: &[Turn]) -> Result<(), ProviderError> {
    if transcript.is_empty() {
        return Err(ProviderError::Failed("there is no message to send".into()));
    }
    Ok(())
}

/// One message of a conversation, as sent to a provider.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Turn {
    pub role: TurnRole,
    pub content: String,
}

impl Turn {
    pub fn user(content: impl Into<String>) -> Self {
        Self {
            role: TurnRole::User,
            content: content.into(),
        }
    }

    pub fn assistant(content: impl Into<String>) -> Self {
        Self {
            role: TurnRole::Assistant,
            content: content.into(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TurnRole {
    User,
    Assistant,
}

impl TurnRole {
    /// The wire (and stored) name: `"user"` or `"assistant"`.
    pub fn as_str(self) -> &'static str {
        match self {
            TurnRole::User => "user",
            TurnRole::Assistant => "assistant",
        }
    }

    /// The inverse of [`TurnRole::as_str`].
    pub fn parse(role: &str) -> Option<Self> {
        match role {
            "user" => Some(TurnRole::User),
            "assistant" => Some(TurnRole::Assistant),
            _ => None,
        }
    }
}

/// Why a provider call could not be made or did not succeed. `Display` is safe to show a
/// client: never a key, never an upstream body.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// The entry is unusable (unknown module, bad or forbidden `base_url` host, `${NAME}` not
    /// allowed, no api_key…). The message names a path (`config.api_key: …`), never a value.
    /// Maps to BAD_USER_INPUT.
    #[error("{0}")]
    BadConfig(String),
    /// 401/403 from the provider. Maps to PROVIDER_ERROR.
    #[error("the provider rejected the credentials (HTTP {status})")]
    Rejected { status: u16 },
    /// Anything else that went wrong upstream after retries (429, 5xx, timeout, malformed
    /// reply). Maps to PROVIDER_ERROR.
    #[error("{0}")]
    Failed(String),
}

impl ProviderError {
    /// The GraphQL `extensions.code` this error maps to.
    pub fn code(&self) -> &'static str {
        match self {
            ProviderError::BadConfig(_) => "BAD_USER_INPUT",
            ProviderError::Rejected { .. } | ProviderError::Failed(_) => "PROVIDER_ERROR",
        }
    }

    /// Prefixes a [`ProviderError::BadConfig`] path with where the entry sits, e.g.
    /// `in_entry("providers[0]")` turns `config.api_key: is missing` into
    /// `providers[0].config.api_key: is missing`. Other variants are returned unchanged.
    pub fn in_entry(self, entry_path: &str) -> Self {
        match self {
            ProviderError::BadConfig(message) => {
                ProviderError::BadConfig(match message.strip_prefix(ENTRY) {
                    Some(rest) => format!("{entry_path}{rest}"),
                    None => format!("{entry_path}.{message}"),
                })
            }
            other => other,
        }
    }
}
