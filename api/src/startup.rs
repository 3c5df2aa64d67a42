//! Building and running the server: `Application::build(settings)`, then
//! `run_until_stopped()`. Tests build several in one process.

use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;

use secrecy::{ExposeSecret, SecretString};
use tokio::net::TcpListener;

use crate::auth::token::{self, NewToken};
use crate::crypto::{Keyring, KeyringError};
use crate::settings::{Settings, StoreSettings};
use crate::state::AppState;
use crate::{db, http, schema};

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(
        "CONFIG_ENCRYPTION_KEY is not set. With PostgreSQL Keyward will not invent a key nobody chose: \
         make one with `keyward keygen`, keep it safe, and set CONFIG_ENCRYPTION_KEY"
    )]
    MissingKey,
    #[error("CONFIG_ENCRYPTION_KEY: {0}")]
    Keyring(#[from] KeyringError),
    #[error("the development key file {path}: {source}")]
    KeyFile {
        path: String,
        source: std::io::Error,
    },
    #[error("the database: {0}")]
    Database(#[from] sea_orm::DbErr),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    Bootstrap(#[from] crate::error::AppError),
    #[error("{0}")]
    KeyringCheck(#[from] crate::keys::service::KeyringCheckError),
}

pub struct Application {
    listener: TcpListener,
    state: AppState,
}

impl Application {
    /// Connects, migrates, loads the keyring and binds; serves nothing until run.
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        crate::telemetry::metrics::handle();
        let keyring = load_keyring(&settings.store)?;
        let db = db::connect(&settings.store).await?;
        db::migrate(&db).await?;
        crate::keys::service::verify_keyring(&db, &keyring).await?;
        let listener =
            TcpListener::bind(settings.bind)
                .await
                .map_err(|source| StartupError::Bind {
                    addr: settings.bind,
                    source,
                })?;
        let state = AppState::new(db, keyring, settings);
        if state.settings.admin_token.is_none() {
            bootstrap_admin(&state).await?;
        }
        Ok(Self { listener, state })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    pub fn port(&self) -> u16 {
        self.local_addr().port()
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until SIGTERM or Ctrl-C, then lets in-flight requests finish.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.run_until(shutdown_signal()).await
    }

    /// Serves until `stop` resolves, then drains within the grace period: the listener
    /// closes at once (new connections are refused), requests in flight finish, idle
    /// keep-alive connections close, and streams over WebSocket (which axum no longer
    /// tracks once upgraded) run to their end. Whatever is left when the grace period is
    /// over is cut off; either way the result is Ok, so the process exits 0.
    pub async fn run_until(
        self,
        stop: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let grace = self.state.settings.shutdown_grace;
        // Keeps the token cache in step with the store while serving; stops with it.
        let _listening = crate::auth::cache::listen(self.state.token_cache.clone(), &self.state.db);
        let schema = schema::build_schema(self.state.clone());
        let streams = schema
            .data::<schema::InFlightStreams>()
            .expect("build_schema stores the stream tracker")
            .clone();
        let app = http::router(self.state, schema);
        tracing::info!(address = %self.listener.local_addr()?, "keyward is listening");
        let (stopped_tx, stopped_rx) = tokio::sync::oneshot::channel::<()>();
        let serve = axum::serve(
            self.listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            stop.await;
            tracing::info!(
                grace_secs = grace.as_secs_f64(),
                "shutting down: draining in-flight requests and streams"
            );
            let _ = stopped_tx.send(());
        });
        let serve = tokio::spawn(async move { serve.await });
        let abort = serve.abort_handle();
        let drained = async {
            // An error is not a shutdown: nothing to wait for then.
            match serve.await {
                Ok(result) => result?,
                Err(e) if e.is_cancelled() => {}
                Err(e) => return Err(std::io::Error::other(e)),
            }
            let live = streams.live();
            if live > 0 {
                tracing::info!(streams = live, "waiting for streams to finish");
            }
            streams.drain().await;
            Ok(())
        };
        let grace_over = async {
            if stopped_rx.await.is_err() {
                // The server ended without being asked to: nothing to time.
                std::future::pending::<()>().await;
            }
            tokio::time::sleep(grace).await;
        };
        tokio::select! {
            result = drained => {
                tracing::info!("drained: exiting");
                result
            }
            () = grace_over => {
                tracing::warn!("grace period over: closing the remaining connections");
                abort.abort();
                Ok(())
            }
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

/// The keyring in effect: CONFIG_ENCRYPTION_KEY, or for SQLite a development key file in
/// the data directory (created on first run, mode 0600, with a loud warning).
pub fn load_keyring(store: &StoreSettings) -> Result<Keyring, StartupError> {
    if let Some(keys) = &store.encryption_key {
        return Ok(Keyring::parse(keys)?);
    }
    if !db::is_sqlite(&db::database_url(store)) {
        return Err(StartupError::MissingKey);
    }
    let path = store.data_dir.join("encryption.key");
    let key = read_or_create_key_file(&path).map_err(|source| StartupError::KeyFile {
        path: path.display().to_string(),
        source,
    })?;
    Ok(Keyring::parse(&key)?)
}

fn read_or_create_key_file(path: &Path) -> std::io::Result<SecretString> {
    if path.exists() {
        tracing::warn!(path = %path.display(), "using the DEVELOPMENT key file; set CONFIG_ENCRYPTION_KEY in production");
        return Ok(SecretString::from(
            std::fs::read_to_string(path)?.trim().to_owned(),
        ));
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let key = Keyring::generate_key();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(key.expose_secret().as_bytes())?;
    file.sync_all()?;
    tracing::warn!(
        path = %path.display(),
        "NO CONFIG_ENCRYPTION_KEY: generated a DEVELOPMENT key file. Anyone who can read it can \
         decrypt every stored secret. Back it up or lose your data; use CONFIG_ENCRYPTION_KEY in production"
    );
    Ok(key)
}

/// First run without KEYWARD_ADMIN_TOKEN: make an ADMIN token and print it once.
async fn bootstrap_admin(state: &AppState) -> Result<(), StartupError> {
    if token::any_active_admin(&state.db).await? {
        return Ok(());
    }
    let new = NewToken {
        name: "bootstrap-admin".into(),
        role: entity::Role::Admin,
        tenant: None,
    };
    let (_, secret) = token::create(&state.db, new).await?;
    // Printed straight to the terminal, not through the log pipeline, and only this once.
    let mut err = std::io::stderr().lock();
    let _ = writeln!(
        err,
        "\n  No admin token existed, so Keyward made one. It is shown ONCE; store it now:\n\n    {}\n\n  \
         Use it as `Authorization: Bearer <token>` (GraphiQL: Headers tab; console: sign-in page).\n",
        secret.expose_secret()
    );
    Ok(())
}
