//! `make bench`: Keyward measured against its database's own limit (issue 9).
//!
//! One run: builds `keyward` in release mode, creates a fresh PostgreSQL database, starts
//! the server on loopback, seeds 10,000 configs across 50 tenants (each configData about
//! 1 KB: one provider `api_key` and ten other fields), then measures, with wrk (HTTP) and
//! pgbench (the equivalent SQL), every workload at 16 and 64 connections:
//!
//! | workload            | what                                                       |
//! | ------------------- | ---------------------------------------------------------- |
//! | `pgbench-select`    | the config point select by id, `-M prepared`               |
//! | `pgbench-insert`    | the insert of a same-size config row (fsync on)            |
//! | `config-read`       | `config(id)`, random seeded ids                            |
//! | `config-decrypt`    | `config(id, decrypt: true)`: audited, one commit           |
//! | `configs-page`      | `configs(first: 20)` with `nodes` and `pageInfo`           |
//! | `configs-page-total`| the same page with `totalCount`                            |
//! | `create-config`     | `createConfig` with a 1 KB plaintext document              |
//! | `send-echo`         | `sendMessage` on a provider-echo session                   |
//! | `fake-direct`       | the local fake OpenAI-compatible provider on its own       |
//! | `send-proxy`        | `sendMessage` through provider-openai to that fake         |
//!
//! For every Keyward run it records req/s, p50, p99, the server's CPU per request
//! (utime+stime from /proc/PID/stat over the run), PostgreSQL's CPU per request, the
//! server's peak RSS (VmHWM, reset before each run) and the GraphQL errors it counted.
//! Several runs (`BENCH_RUNS`) each start from a fresh database; the medians are printed
//! last, with the issue's targets as ratios. Results go to `target/bench/`.
//!
//! Everything stays on 127.0.0.1 and every step is bounded in time. Settings (environment):
//! `BENCH_RUNS` (1), `BENCH_DURATION` seconds per measurement (10), `BENCH_WARMUP` (2),
//! `BENCH_CONNECTIONS` ("16,64"), `BENCH_WORKLOADS` (all; comma-separated names above),
//! `BENCH_PG_URL` (postgres://postgres@127.0.0.1:5432/postgres), `BENCH_CONFIGS` (10000),
//! `BENCH_TENANTS` (50), `BENCH_KEEP=1` keeps the database, `BENCH_SKIP_BUILD=1`,
//! `BENCH_SERVER_ENV` (extra `NAME=value,…` for the server), `BENCH_BINARY` (another
//! keyward binary, e.g. a saved build to compare with), `BENCH_PERF` (workloads whose
//! first measured run is profiled with `perf record`; reports land in `target/bench/`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail, ensure};
use entity::{SealedJson, config, config_tag, session};
use keyward::crypto::{Keyring, SealedBoxKeys, seal_document};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, EntityTrait, Set};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::process::{Child, Command};
use uuid::Uuid;

/// The user message of the chat workloads.
const CHAT_CONTENT: &str = "What is the capital of France?";
/// Sessions per wrk thread in a chat workload: consecutive requests of one thread use
/// different sessions, so no two requests in flight append to the same transcript.
const SESSIONS_PER_THREAD: usize = 1000;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let started = Instant::now();
    let opts = Opts::from_env()?;
    let tools = Tools::find().await?;
    if !opts.skip_build {
        build_release(&opts.root).await?;
    }
    let binary = std::env::var_os("BENCH_BINARY")
        .map(PathBuf::from)
        .unwrap_or_else(|| opts.profile_dir.join("keyward"));
    ensure!(binary.exists(), "{} is missing", binary.display());
    std::fs::create_dir_all(&opts.out_dir)?;
    let fake = FakeProvider::start().await?;
    println!(
        "built and ready after {:.0}s",
        started.elapsed().as_secs_f64()
    );

    let mut runs = Vec::new();
    let mut conditions = Vec::new();
    for run in 1..=opts.runs {
        let quiet = quiet_window(&opts).await;
        let run_started = Instant::now();
        let load_before = load_average();
        println!(
            "\n=== run {run} of {} ({load_before}; {quiet}) ===",
            opts.runs
        );
        let results = one_run(&opts, &tools, &binary, &fake).await?;
        let condition = Conditions {
            run,
            at: utc_now(),
            quiet,
            load_before,
            load_after: load_average(),
            seconds: run_started.elapsed().as_secs_f64(),
            fernet_encrypt_us: fernet_encrypt_us(),
        };
        print_table(&format!("run {run}"), &results);
        println!(
            "run {run}: {:.0}s, {} → {}; per-field Fernet encrypt {:.2} µs",
            condition.seconds,
            condition.load_before,
            condition.load_after,
            condition.fernet_encrypt_us
        );
        let path = opts.out_dir.join(format!("run-{}-{run}.json", unix_secs()));
        std::fs::write(&path, serde_json::to_string_pretty(&results)?)?;
        println!("(saved {})", path.display());
        runs.push(results);
        conditions.push(condition);
    }
    let medians = medians(&runs);
    if opts.runs > 1 {
        print_table(&format!("medians of {} runs", opts.runs), &medians);
    }
    let fernet = {
        let mut v: Vec<f64> = conditions.iter().map(|c| c.fernet_encrypt_us).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    print_targets(&medians, fernet);
    let path = opts.out_dir.join("latest-medians.json");
    std::fs::write(&path, serde_json::to_string_pretty(&medians)?)?;
    let summary = markdown(&opts, &medians, &conditions, fernet);
    let path = opts.out_dir.join("latest-summary.md");
    std::fs::write(&path, &summary)?;
    println!(
        "\n---- summary for tests/bench/README.md (also in {}) ----\n",
        path.display()
    );
    println!("{summary}");
    println!(
        "make bench took {:.1} minutes in all",
        started.elapsed().as_secs_f64() / 60.0
    );
    Ok(())
}

/// What a run was measured under.
struct Conditions {
    run: usize,
    at: String,
    quiet: Window,
    load_before: String,
    load_after: String,
    seconds: f64,
    fernet_encrypt_us: f64,
}

/// Whether a run started in a quiet window (no compiler running for a while).
#[derive(Clone, Copy)]
enum Window {
    /// Waiting was turned off (BENCH_QUIET_WAIT=0).
    NotAwaited,
    /// No `rustc` for the second number of seconds, after waiting the first.
    Quiet(u64, u64),
    /// `rustc` kept running: started anyway after BENCH_QUIET_WAIT seconds.
    Busy(u64),
}

impl std::fmt::Display for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Window::NotAwaited => write!(f, "quiet window not awaited (BENCH_QUIET_WAIT=0)"),
            Window::Quiet(w, q) => write!(f, "quiet (no rustc for {q} s before; waited {w} s)"),
            Window::Busy(w) => write!(f, "NOT quiet (rustc still running after {w} s of waiting)"),
        }
    }
}

/// Waits, up to BENCH_QUIET_WAIT seconds, until no `rustc` process has been seen for
/// BENCH_QUIET_FOR seconds (polling every second): other builds on the machine make every
/// figure noisy.
async fn quiet_window(opts: &Opts) -> Window {
    if opts.quiet_wait == 0 {
        return Window::NotAwaited;
    }
    let started = Instant::now();
    let mut quiet_since = Instant::now();
    let mut announced = false;
    loop {
        let busy = std::process::Command::new("pgrep")
            .args(["-x", "rustc"])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if busy {
            quiet_since = Instant::now();
            if !announced {
                println!(
                    "waiting for a quiet window (no rustc for {}s, at most {}s)…",
                    opts.quiet_for, opts.quiet_wait
                );
                announced = true;
            }
        }
        let waited = started.elapsed().as_secs();
        if quiet_since.elapsed().as_secs() >= opts.quiet_for {
            return Window::Quiet(waited, opts.quiet_for);
        }
        if waited >= opts.quiet_wait {
            return Window::Busy(waited);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Median time of one `encrypt_value` of a provider key (the issue's per-field figure),
/// over 15 batches of 2,000, in this release build.
fn fernet_encrypt_us() -> f64 {
    let key = Keyring::generate_key();
    let Ok(keyring) = Keyring::parse(&key) else {
        return f64::NAN;
    };
    let value = "sk-bench-0123456789abcdef0123456789abcdef0123456789abcdef01234567";
    let mut batches: Vec<f64> = (0..15)
        .map(|_| {
            let started = Instant::now();
            for _ in 0..2000 {
                std::hint::black_box(keyward::crypto::encrypt_value(
                    &keyring,
                    std::hint::black_box(value),
                ));
            }
            started.elapsed().as_secs_f64() * 1e6 / 2000.0
        })
        .collect();
    batches.sort_by(f64::total_cmp);
    batches[batches.len() / 2]
}

// ---------------------------------------------------------------------------------------
// Settings and tools

struct Opts {
    root: PathBuf,
    /// Where cargo put this program, and puts the keyward binary.
    profile_dir: PathBuf,
    out_dir: PathBuf,
    runs: usize,
    duration: u64,
    warmup: u64,
    connections: Vec<u32>,
    workloads: Option<Vec<String>>,
    pg_url: String,
    configs: usize,
    tenants: usize,
    keep: bool,
    skip_build: bool,
    server_env: Vec<(String, String)>,
    /// Workloads whose first measured run is profiled with `perf record`.
    perf: Vec<String>,
    /// Longest wait for a quiet window before each run, in seconds (0: do not wait).
    quiet_wait: u64,
    /// How long no `rustc` must have run for the machine to count as quiet, in seconds.
    quiet_for: u64,
}

impl Opts {
    fn from_env() -> Result<Self> {
        fn var(name: &str) -> Option<String> {
            std::env::var(name).ok().filter(|v| !v.trim().is_empty())
        }
        fn num<T: std::str::FromStr>(name: &str, default: T) -> Result<T> {
            match var(name) {
                Some(v) => v
                    .trim()
                    .parse()
                    .map_err(|_| anyhow::anyhow!("{name}={v} is not a number")),
                None => Ok(default),
            }
        }
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .context("the workspace root")?
            .to_path_buf();
        // This program runs from <target>/release/bench, beside the keyward binary it
        // builds, whatever the target directory is (CARGO_TARGET_DIR, a cargo config's
        // build.target-dir, or the default).
        let exe = std::env::current_exe().context("the bench's own path")?;
        let profile_dir = exe.parent().context("the bench's directory")?.to_path_buf();
        let target_dir = profile_dir
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| root.join("target"));
        let connections = var("BENCH_CONNECTIONS")
            .unwrap_or_else(|| "16,64".into())
            .split(',')
            .map(|c| c.trim().parse::<u32>())
            .collect::<Result<Vec<_>, _>>()
            .context("BENCH_CONNECTIONS: numbers separated by commas")?;
        ensure!(
            connections.iter().all(|&c| c >= 1),
            "connections must be at least 1"
        );
        let server_env = var("BENCH_SERVER_ENV")
            .map(|list| {
                list.split(',')
                    .filter_map(|kv| kv.split_once('='))
                    .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                    .collect()
            })
            .unwrap_or_default();
        Ok(Self {
            out_dir: target_dir.join("bench"),
            root,
            profile_dir,
            runs: num("BENCH_RUNS", 1)?,
            duration: num("BENCH_DURATION", 10)?,
            warmup: num("BENCH_WARMUP", 2)?,
            connections,
            workloads: var("BENCH_WORKLOADS")
                .map(|w| w.split(',').map(|s| s.trim().to_owned()).collect()),
            pg_url: var("BENCH_PG_URL")
                .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".into()),
            configs: num("BENCH_CONFIGS", 10_000)?,
            tenants: num("BENCH_TENANTS", 50)?,
            keep: var("BENCH_KEEP").is_some(),
            skip_build: var("BENCH_SKIP_BUILD").is_some(),
            server_env,
            perf: var("BENCH_PERF")
                .map(|w| w.split(',').map(|s| s.trim().to_owned()).collect())
                .unwrap_or_default(),
            quiet_wait: num("BENCH_QUIET_WAIT", 600)?,
            quiet_for: num("BENCH_QUIET_FOR", 60)?,
        })
    }

    fn wants(&self, workload: &str) -> bool {
        self.workloads
            .as_ref()
            .is_none_or(|w| w.iter().any(|x| x == workload))
    }
}

struct Tools {
    wrk: PathBuf,
    pgbench: PathBuf,
    clock_ticks: f64,
}

impl Tools {
    async fn find() -> Result<Self> {
        let wrk = match which("wrk").await {
            Some(path) => path,
            None => {
                println!("wrk is missing: installing it with apt-get");
                let status = Command::new("apt-get")
                    .args(["install", "-y", "-q", "wrk"])
                    .env("DEBIAN_FRONTEND", "noninteractive")
                    .status()
                    .await
                    .context("apt-get (install wrk yourself if this is not Debian)")?;
                ensure!(status.success(), "apt-get install wrk failed");
                which("wrk").await.context("wrk after apt-get")?
            }
        };
        let pgbench = match which("pgbench").await {
            Some(path) => path,
            None => {
                let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
                    .into_iter()
                    .flatten()
                    .flatten()
                    .map(|e| e.path().join("bin/pgbench"))
                    .filter(|p| p.exists())
                    .collect();
                found.sort();
                found
                    .pop()
                    .context("pgbench not found (install postgresql-contrib or the server)")?
            }
        };
        let clock_ticks = Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .await
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0);
        Ok(Self {
            wrk,
            pgbench,
            clock_ticks,
        })
    }
}

async fn which(name: &str) -> Option<PathBuf> {
    let out = Command::new("which").arg(name).output().await.ok()?;
    let path = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (out.status.success() && !path.is_empty()).then(|| PathBuf::from(path))
}

async fn build_release(root: &Path) -> Result<()> {
    println!("building keyward (release)…");
    // With `-p tests` beside `-p keyward`, the dependencies resolve to the same features as
    // the `cargo run -p tests --bin bench` that started this program, so the library this
    // program was built with is reused and only the binary is linked (keyward alone would
    // rebuild async-graphql and the keyward library once more, for minutes).
    let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cargo
        .args([
            "build",
            "--release",
            "-p",
            "keyward",
            "-p",
            "tests",
            "--bin",
            "keyward",
        ])
        .current_dir(root);
    // `cargo run` gave this program the variables it gives a crate (CARGO_PKG_NAME=tests,
    // CARGO_MANIFEST_DIR, …). Build scripts that watch them (ring's does) would see them
    // change and rebuild ring, rustls, sqlx, sea-orm and keyward all over again.
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("CARGO_PKG_")
            || matches!(
                &*name,
                "CARGO_MANIFEST_DIR"
                    | "CARGO_MANIFEST_PATH"
                    | "CARGO_MANIFEST_LINKS"
                    | "CARGO_CRATE_NAME"
                    | "CARGO_BIN_NAME"
                    | "CARGO_PRIMARY_PACKAGE"
                    | "OUT_DIR"
            )
        {
            cargo.env_remove(&*name);
        }
    }
    let status = cargo.status().await?;
    ensure!(
        status.success(),
        "cargo build --release -p keyward --bin keyward failed"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// One run: fresh database, server, seed, measurements

/// One measured run of one workload at one connection count.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Measure {
    workload: String,
    connections: u32,
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    requests: u64,
    /// HTTP or socket errors (wrk), failed transactions (pgbench), GraphQL errors.
    errors: u64,
    /// Keyward's own CPU time per request (user and system).
    cpu_us_per_req: Option<f64>,
    /// Of which in the kernel (system time: sockets, mostly).
    #[serde(default)]
    cpu_sys_us_per_req: Option<f64>,
    /// PostgreSQL's CPU time (every backend) per request.
    pg_cpu_us_per_req: Option<f64>,
    /// Keyward's peak resident set during the run.
    peak_rss_mb: Option<f64>,
}

async fn one_run(
    opts: &Opts,
    tools: &Tools,
    binary: &Path,
    fake: &FakeProvider,
) -> Result<Vec<Measure>> {
    let db_name = format!("keyward_bench_{}_{}", std::process::id(), unix_secs());
    let admin = Database::connect(&opts.pg_url)
        .await
        .context("PostgreSQL at BENCH_PG_URL")?;
    admin
        .execute_unprepared(&format!("CREATE DATABASE {db_name}"))
        .await?;
    let mut db_url = reqwest::Url::parse(&opts.pg_url)?;
    db_url.set_path(&db_name);
    let db_url = db_url.to_string();
    let outcome = run_against(opts, tools, binary, fake, &db_url).await;
    if opts.keep {
        println!("kept database {db_name}");
    } else {
        admin
            .execute_unprepared(&format!("DROP DATABASE IF EXISTS {db_name} WITH (FORCE)"))
            .await?;
    }
    admin.close().await.ok();
    outcome
}

async fn run_against(
    opts: &Opts,
    tools: &Tools,
    binary: &Path,
    fake: &FakeProvider,
    db_url: &str,
) -> Result<Vec<Measure>> {
    let key = String::from_utf8(Command::new(binary).arg("keygen").output().await?.stdout)?
        .trim()
        .to_owned();
    let break_glass = format!("bench-{}", Uuid::new_v4().simple());
    let server = Server::start(opts, binary, db_url, &key, &break_glass).await?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let api = Api {
        client,
        url: format!("http://{}/graphql", server.addr),
        token: String::new(),
    };
    // A stored ADMIN token, so every request goes through the real token check.
    let created = api
        .with_token(&break_glass)
        .call(
            "mutation { createApiToken(input: {name: \"bench\", role: ADMIN}) { token } }",
            json!({}),
        )
        .await?;
    let api = api.with_token(
        created["createApiToken"]["token"]
            .as_str()
            .context("a token")?,
    );

    let db = Database::connect(db_url).await?;
    let started = Instant::now();
    let seeded = seed(opts, &db, &key).await?;
    println!(
        "seeded {} configs across {} tenants in {:.1}s (plaintext configData {} bytes, stored {} bytes)",
        seeded.ids.len(),
        opts.tenants,
        started.elapsed().as_secs_f64(),
        seeded.plaintext_bytes,
        seeded.stored_doc.len()
    );

    if opts.keep {
        // What profiling the kept database needs (tests/bench/README.md, "Profiles").
        let token = api.token.as_str();
        let env = format!(
            "DATABASE_URL={db_url}\nCONFIG_ENCRYPTION_KEY={key}\nKEYWARD_ADMIN_TOKEN={break_glass}\nBENCH_TOKEN={token}\n"
        );
        let ids: String = seeded.ids.iter().map(|id| format!("{id}\n")).collect();
        std::fs::write(opts.out_dir.join("kept.env"), env)?;
        std::fs::write(opts.out_dir.join("kept-ids.txt"), ids)?;
        println!(
            "kept: settings in {}, ids in {}",
            opts.out_dir.join("kept.env").display(),
            opts.out_dir.join("kept-ids.txt").display()
        );
    }

    let mut bench = Bench {
        opts,
        tools,
        server: &server,
        api: &api,
        db: &db,
        db_url,
        db_name: reqwest::Url::parse(db_url)?
            .path()
            .trim_start_matches('/')
            .to_owned(),
        results: Vec::new(),
    };
    bench.pgbench(&seeded).await?;
    bench.keyward(&seeded, fake).await?;
    let results = std::mem::take(&mut bench.results);
    db.close().await.ok();
    server.stop().await;
    Ok(results)
}

struct Bench<'a> {
    opts: &'a Opts,
    tools: &'a Tools,
    server: &'a Server,
    api: &'a Api,
    db: &'a DatabaseConnection,
    db_url: &'a str,
    db_name: String,
    results: Vec<Measure>,
}

impl Bench<'_> {
    async fn pgbench(&mut self, seeded: &Seeded) -> Result<()> {
        let dir = tempfile::tempdir()?;
        let select = dir.path().join("select.sql");
        std::fs::write(
            &select,
            format!(
                "\\set n random(1, {count})\n\\set ts :base + :n\n\
                 SELECT id, name, description, tenant, tags, config_data, version, created_at, updated_at \
                 FROM configs WHERE id = (lpad(to_hex(:ts::bigint), 12, '0') || '70008' || lpad(to_hex(:n::bigint), 15, '0'))::uuid LIMIT 1;\n",
                count = seeded.ids.len()
            ),
        )?;
        let insert = dir.path().join("insert.sql");
        std::fs::write(
            &insert,
            format!(
                "\\set r1 random(0, 4095)\n\\set r2 random(0, 1152921504606846975)\n\
                 INSERT INTO configs (id, name, description, tenant, tags, config_data, version, created_at, updated_at) \
                 VALUES ((lpad(to_hex((extract(epoch from clock_timestamp()) * 1000)::bigint), 12, '0') || '7' \
                 || lpad(to_hex(:r1::int), 3, '0') || '8' || lpad(to_hex(:r2::bigint), 15, '0'))::uuid, \
                 'pgbench-insert', NULL, 'tenant-00', '[\"bench\"]', '{doc}', 1, now(), now()) RETURNING *;\n",
                doc = pgbench_literal(&seeded.stored_doc)
            ),
        )?;
        for (name, script) in [("pgbench-select", &select), ("pgbench-insert", &insert)] {
            if !self.opts.wants(name) {
                continue;
            }
            // The insert at one client too: a single commit's latency, the floor of every write.
            let mut conns = self.opts.connections.clone();
            if name == "pgbench-insert" && !conns.contains(&1) {
                conns.insert(0, 1);
            }
            for c in conns {
                let m = self
                    .pgbench_one(name, script, c, seeded, dir.path())
                    .await?;
                report_line(&m);
                self.results.push(m);
            }
        }
        self.db
            .execute_unprepared("DELETE FROM configs WHERE name = 'pgbench-insert'")
            .await?;
        settle(self.db).await?;
        Ok(())
    }

    async fn pgbench_one(
        &self,
        name: &str,
        script: &Path,
        connections: u32,
        seeded: &Seeded,
        dir: &Path,
    ) -> Result<Measure> {
        let prefix = dir.join(format!("log-{name}-{connections}"));
        let threads = connections.min(2);
        let child = Command::new(&self.tools.pgbench)
            .args(["-n", "-M", "prepared", "--log"])
            .arg(format!("--log-prefix={}", prefix.display()))
            .arg(format!("-c{connections}"))
            .arg(format!("-j{threads}"))
            .arg(format!("-T{}", self.opts.duration))
            .arg(format!("-Dbase={}", seeded.base_ms))
            .arg("-f")
            .arg(script)
            .arg(self.db_url)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        // pgbench's backends exit with it: sample their CPU inside the run, from 1 s in
        // to 1 s before the end, and count the transactions of that window from the log.
        let window = self.opts.duration.saturating_sub(2).max(1);
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (before, from) = (pg_cpu_ticks(&self.db_name), unix_micros());
        tokio::time::sleep(Duration::from_secs(window)).await;
        let (after, to) = (pg_cpu_ticks(&self.db_name), unix_micros());
        let out = tokio::time::timeout(
            Duration::from_secs(self.opts.duration + 60),
            child.wait_with_output(),
        )
        .await
        .context("pgbench did not finish in time")??;
        let text = String::from_utf8_lossy(&out.stdout);
        ensure!(
            out.status.success(),
            "pgbench {name}: {}{}",
            text,
            String::from_utf8_lossy(&out.stderr)
        );
        let tps = text
            .lines()
            .find_map(|l| {
                l.strip_prefix("tps = ")
                    .and_then(|r| r.split_whitespace().next()?.parse::<f64>().ok())
            })
            .context("pgbench printed no tps")?;
        let failed = text
            .lines()
            .find_map(|l| {
                l.strip_prefix("number of failed transactions: ")
                    .and_then(|r| r.split_whitespace().next()?.parse::<u64>().ok())
            })
            .unwrap_or(0);
        // Per-transaction log lines: client transaction latency_us script epoch epoch_us.
        let mut latencies = Vec::new();
        let mut in_window = 0u64;
        let stem = prefix
            .file_name()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_owned();
        for entry in std::fs::read_dir(dir)?.flatten() {
            if entry.file_name().to_string_lossy().starts_with(&stem) {
                let log = std::fs::read_to_string(entry.path())?;
                for line in log.lines() {
                    let f: Vec<u64> = line
                        .split_whitespace()
                        .map(|x| x.parse().unwrap_or(0))
                        .collect();
                    if let [_, _, latency, _, secs, micros, ..] = f[..] {
                        latencies.push(latency);
                        if (from..to).contains(&(secs * 1_000_000 + micros)) {
                            in_window += 1;
                        }
                    }
                }
                std::fs::remove_file(entry.path()).ok();
            }
        }
        latencies.sort_unstable();
        let requests = latencies.len() as u64;
        Ok(Measure {
            workload: name.into(),
            connections,
            rps: tps,
            p50_ms: percentile(&latencies, 50.0) / 1000.0,
            p99_ms: percentile(&latencies, 99.0) / 1000.0,
            requests,
            errors: failed,
            cpu_us_per_req: None,
            cpu_sys_us_per_req: None,
            pg_cpu_us_per_req: per_request(
                after.saturating_sub(before),
                in_window,
                self.tools.clock_ticks,
            ),
            peak_rss_mb: None,
        })
    }

    async fn keyward(&mut self, seeded: &Seeded, fake: &FakeProvider) -> Result<()> {
        let ids: Vec<String> = seeded.ids.iter().map(Uuid::to_string).collect();
        let read = Script::random(
            r#"{"query":"query Read($id: ID!) { config(id: $id) { id name tenant tags configData sensitivePaths version updatedAt } }","variables":{"id":""#,
            r#""}}"#,
            ids.clone(),
        );
        let reveal = Script::random(
            r#"{"query":"query Reveal($id: ID!) { config(id: $id, decrypt: true) { id name tenant configData encrypted version } }","variables":{"id":""#,
            r#""}}"#,
            ids,
        );
        let page = Script::fixed(
            r#"{"query":"query Page { configs(first: 20) { pageInfo { hasNextPage endCursor } nodes { id name tenant tags configData version updatedAt } } }"}"#,
        );
        let page_total = Script::fixed(
            r#"{"query":"query PageTotal { configs(first: 20) { totalCount pageInfo { hasNextPage endCursor } nodes { id name tenant tags configData version updatedAt } } }"}"#,
        );
        let create = Script::counter(
            r#"{"query":"mutation Create($input: CreateConfigInput!) { createConfig(input: $input) { id version sensitivePaths } }","variables":{"input":{"name":"bench-create-"#,
            &format!(
                r#"","tenant":"tenant-07","tags":["bench"],"configData":{}}}}}}}"#,
                seeded.plaintext_doc
            ),
        );
        let workloads: [(&str, &Script); 5] = [
            ("config-read", &read),
            ("config-decrypt", &reveal),
            ("configs-page", &page),
            ("configs-page-total", &page_total),
            ("create-config", &create),
        ];
        for (name, script) in workloads {
            if !self.opts.wants(name) {
                continue;
            }
            self.check(name, &script.sample()).await?;
            self.warm(script, "/graphql").await?;
            for &c in &self.opts.connections {
                let m = self.wrk(name, script, c, "/graphql", true).await?;
                report_line(&m);
                self.results.push(m);
            }
        }
        self.chat(seeded, fake).await
    }

    /// `sendMessage` on provider-echo, then through provider-openai to the local fake
    /// (and the fake on its own, for the proxy's overhead).
    async fn chat(&mut self, seeded: &Seeded, fake: &FakeProvider) -> Result<()> {
        let mut doc = seeded.plaintext_value.clone();
        doc["providers"][0] = json!({"module": "provider-echo", "config": {"model": "echo"}});
        let echo = self.chat_template(doc).await?;
        let mut doc = seeded.plaintext_value.clone();
        doc["providers"][0]["config"]["base_url"] = json!(format!("{}/v1", fake.base_url()));
        let proxied = self.chat_template(doc).await?;
        let send_prefix = format!(
            r#"{{"query":"mutation Send($s: ID!) {{ sendMessage(sessionId: $s, content: \"{CHAT_CONTENT}\") {{ id role content }} }}","variables":{{"s":""#
        );

        if self.opts.wants("send-echo") {
            let script = self.session_script(&echo, &send_prefix).await?;
            self.check("send-echo", &script.sample()).await?;
            self.warm(&script, "/graphql").await?;
            for &c in &self.opts.connections {
                let script = self.session_script(&echo, &send_prefix).await?;
                let m = self.wrk("send-echo", &script, c, "/graphql", true).await?;
                report_line(&m);
                self.results.push(m);
            }
        }
        // The proxy's overhead is clearest without queueing: one connection too.
        let mut conns = vec![1];
        conns.extend(self.opts.connections.iter().filter(|&&c| c != 1));
        if self.opts.wants("fake-direct") {
            let body = json!({
                "model": "gpt-4o-mini",
                "messages": [{"role": "user", "content": CHAT_CONTENT}],
                "max_tokens": 1024,
                "temperature": 0.2,
            })
            .to_string();
            let script = Script::fixed(&body).with_header("Authorization", "Bearer sk-bench");
            let fake_server = Target {
                addr: fake.addr,
                pid: None,
            };
            for &c in &conns {
                let m = self
                    .wrk_at(
                        &fake_server,
                        "fake-direct",
                        &script,
                        c,
                        "/v1/chat/completions",
                        false,
                    )
                    .await?;
                report_line(&m);
                self.results.push(m);
            }
        }
        if self.opts.wants("send-proxy") {
            let script = self.session_script(&proxied, &send_prefix).await?;
            self.check("send-proxy", &script.sample()).await?;
            self.warm(&script, "/graphql").await?;
            for &c in &conns {
                let script = self.session_script(&proxied, &send_prefix).await?;
                let m = self.wrk("send-proxy", &script, c, "/graphql", true).await?;
                report_line(&m);
                self.results.push(m);
            }
        }
        Ok(())
    }

    /// A config with this document and one session on it (made through the API), whose row
    /// is the template of the session pools.
    async fn chat_template(&self, doc: Value) -> Result<session::Model> {
        let made = self
            .api
            .call(
                "mutation C($input: CreateConfigInput!) { createConfig(input: $input) { id } }",
                json!({"input": {"name": "bench-chat", "tenant": "bench", "configData": doc}}),
            )
            .await?;
        let config_id = made["createConfig"]["id"].as_str().context("config id")?;
        let made = self
            .api
            .call(
                "mutation S($id: ID!) { createSession(input: {configId: $id}) { id } }",
                json!({"id": config_id}),
            )
            .await?;
        let id: Uuid = made["createSession"]["id"]
            .as_str()
            .context("session id")?
            .parse()?;
        session::Entity::find_by_id(id)
            .one(self.db)
            .await?
            .context("the session row")
    }

    /// A fresh pool of sessions like `template` (so transcripts stay short), as a script
    /// whose threads each cycle through their own slice of it.
    async fn session_script(&self, template: &session::Model, prefix: &str) -> Result<Script> {
        let count = SESSIONS_PER_THREAD * 2;
        let now = chrono::Utc::now();
        let ids: Vec<Uuid> = (0..count).map(|_| Uuid::now_v7()).collect();
        for chunk in ids.chunks(1000) {
            session::Entity::insert_many(chunk.iter().map(|&id| session::ActiveModel {
                id: Set(id),
                config_id: Set(template.config_id),
                tenant: Set(template.tenant.clone()),
                provider: Set(template.provider.clone()),
                provider_index: Set(template.provider_index),
                model: Set(template.model.clone()),
                status: Set(template.status),
                message_count: Set(0),
                created_at: Set(now),
                updated_at: Set(now),
            }))
            .exec(self.db)
            .await?;
        }
        Ok(Script::per_thread(
            prefix,
            r#""}}"#,
            ids.iter().map(Uuid::to_string).collect(),
        ))
    }

    /// `perf record` of the server (CPU clock, DWARF call graphs from .eh_frame) for the
    /// length of one measured run.
    fn start_perf(&self, pid: u32, name: &str, connections: u32) -> Result<(Child, PathBuf)> {
        let data = self
            .opts
            .out_dir
            .join(format!("perf-{name}-c{connections}.data"));
        let child = Command::new("perf")
            .args([
                "record",
                "-q",
                "-e",
                "cpu-clock",
                "-F",
                "499",
                "--call-graph",
                "dwarf",
            ])
            .arg("-p")
            .arg(pid.to_string())
            .arg("-o")
            .arg(&data)
            .args(["--", "sleep"])
            .arg(self.opts.duration.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("perf (apt-get install linux-perf)")?;
        Ok((child, data))
    }

    /// One request of the workload through reqwest: it must answer without errors.
    async fn check(&self, name: &str, body: &str) -> Result<()> {
        let res = self
            .api
            .client
            .post(&self.api.url)
            .bearer_auth(&self.api.token)
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await?;
        let status = res.status();
        let answer: Value = res.json().await?;
        ensure!(
            status.is_success() && answer.get("errors").is_none_or(Value::is_null),
            "{name}: the sample request failed ({status}): {answer}"
        );
        let data = answer["data"].as_object().context("data")?;
        ensure!(
            data.values().all(|v| !v.is_null()),
            "{name}: null data: {answer}"
        );
        Ok(())
    }

    async fn warm(&self, script: &Script, path: &str) -> Result<()> {
        if self.opts.warmup == 0 {
            return Ok(());
        }
        let target = self.server.target();
        run_wrk(
            self.tools,
            &target,
            script,
            Some(&self.api.token),
            16,
            self.opts.warmup,
            path,
        )
        .await
        .map(|_| ())
    }

    async fn wrk(
        &self,
        name: &str,
        script: &Script,
        connections: u32,
        path: &str,
        graphql: bool,
    ) -> Result<Measure> {
        let target = self.server.target();
        self.wrk_at(&target, name, script, connections, path, graphql)
            .await
    }

    async fn wrk_at(
        &self,
        target: &Target,
        name: &str,
        script: &Script,
        connections: u32,
        path: &str,
        graphql: bool,
    ) -> Result<Measure> {
        let errors_before = if graphql {
            self.server.graphql_errors(&self.api.client).await?
        } else {
            0
        };
        if let Some(pid) = target.pid {
            // Resets VmHWM, so the peak is this run's.
            std::fs::write(format!("/proc/{pid}/clear_refs"), "5").ok();
        }
        let perf = match target.pid {
            Some(pid)
                if self.opts.perf.iter().any(|w| w == name)
                    && Some(&connections) == self.opts.connections.first() =>
            {
                Some(self.start_perf(pid, name, connections)?)
            }
            _ => None,
        };
        let cpu_before = target.pid.map(process_cpu).transpose()?;
        let pg_before = pg_cpu_ticks(&self.db_name);
        let result = run_wrk(
            self.tools,
            target,
            script,
            graphql.then_some(self.api.token.as_str()),
            connections,
            self.opts.duration,
            path,
        )
        .await?;
        let pg_after = pg_cpu_ticks(&self.db_name);
        let cpu_after = target.pid.map(process_cpu).transpose()?;
        let peak = target.pid.and_then(peak_rss_mb);
        if let Some((child, data)) = perf {
            finish_perf(child, &data).await?;
        }
        let graphql_errors = if graphql {
            self.server.graphql_errors(&self.api.client).await? - errors_before
        } else {
            0
        };
        let requests = result.requests;
        Ok(Measure {
            workload: name.into(),
            connections,
            rps: requests as f64 / (result.duration_us as f64 / 1e6),
            p50_ms: result.p50_us as f64 / 1000.0,
            p99_ms: result.p99_us as f64 / 1000.0,
            requests,
            errors: result.connect
                + result.read
                + result.write
                + result.status
                + result.timeout
                + graphql_errors,
            cpu_us_per_req: cpu_before.zip(cpu_after).and_then(|(b, a)| {
                per_request(
                    (a.0 + a.1).saturating_sub(b.0 + b.1),
                    requests,
                    self.tools.clock_ticks,
                )
            }),
            cpu_sys_us_per_req: cpu_before.zip(cpu_after).and_then(|(b, a)| {
                per_request(a.1.saturating_sub(b.1), requests, self.tools.clock_ticks)
            }),
            pg_cpu_us_per_req: per_request(
                pg_after.saturating_sub(pg_before),
                requests,
                self.tools.clock_ticks,
            ),
            peak_rss_mb: peak,
        })
    }
}

/// Waits for `perf record` and writes two reports beside its data: self time by symbol,
/// and the same with callers.
async fn finish_perf(mut child: Child, data: &Path) -> Result<()> {
    tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .context("perf record did not stop")??;
    for (suffix, args) in [
        (
            "self",
            vec!["--no-children", "--sort", "dso,symbol", "-g", "none"],
        ),
        (
            "children",
            vec![
                "--children",
                "--sort",
                "symbol",
                "-g",
                "caller,0.5,callee,function,percent",
                "--percent-limit",
                "2",
            ],
        ),
    ] {
        let out = Command::new("perf")
            .args(["report", "--stdio", "-i"])
            .arg(data)
            .args(args)
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .await?;
        let report = data.with_extension(format!("{suffix}.txt"));
        std::fs::write(&report, &out.stdout)?;
        println!("  profile: {}", report.display());
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The dataset

struct Seeded {
    ids: Vec<Uuid>,
    /// The ids' shared shape: UUIDv7 with timestamp `base_ms + n` and `n` in the low bits,
    /// so pgbench can compute id `n` (1-based) in SQL as Keyward's clients pick it from a list.
    base_ms: u64,
    plaintext_value: Value,
    plaintext_doc: String,
    plaintext_bytes: usize,
    /// A stored (sealed) document, as pgbench inserts it.
    stored_doc: String,
}

fn seeded_id(base_ms: u64, n: u64) -> Uuid {
    Uuid::from_u128(
        (u128::from(base_ms + n) << 80)
            | (0x7000u128 << 64)
            | 0x8000_0000_0000_0000
            | u128::from(n),
    )
}

/// A realistic 1 KB configData: one provider (with its `api_key`) and ten other fields.
fn plaintext_doc(api_key: &str) -> Value {
    let mut doc = json!({
        "providers": [{
            "module": "provider-openai",
            "config": {
                "api_key": api_key,
                "model": "gpt-4o-mini",
                "base_url": "https://api.openai.com/v1",
                "max_tokens": 1024
            }
        }],
        "region": "eu-west-1",
        "environment": "production",
        "owner": "platform-team@example.com",
        "temperature": 0.2,
        "timeout_ms": 30000,
        "retries": 3,
        "stream": true,
        "labels": {"team": "platform", "cost_center": "cc-1234", "tier": "gold"},
        "system_prompt": "You are a concise assistant for the platform team. Answer in plain English, cite the runbook section when one applies, and say so when you do not know. Never invent command-line flags.",
        "notes": "",
    });
    // Pad `notes` so the compact document is 1,024 bytes.
    let size = serde_json::to_string(&doc).map(|s| s.len()).unwrap_or(0);
    let pad = 1024usize.saturating_sub(size);
    let filler = "Rotated quarterly by the platform team; see the access policy. ";
    doc["notes"] = json!(filler.repeat(pad / filler.len() + 1)[..pad].to_owned());
    doc
}

async fn seed(opts: &Opts, db: &DatabaseConnection, key: &str) -> Result<Seeded> {
    let keyring = Keyring::parse(&SecretString::from(key.to_owned()))?;
    let sealed_keys = SealedBoxKeys::derive(&keyring);
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as u64;
    let base_ms = now_ms - 86_400_000;
    let base_time = chrono::Utc::now() - chrono::Duration::days(1);
    let mut ids = Vec::with_capacity(opts.configs);
    let mut stored_doc = String::new();
    let mut batch = Vec::new();
    let mut tags = Vec::new();
    for n in 1..=opts.configs as u64 {
        let id = seeded_id(base_ms, n);
        let api_key = format!(
            "sk-bench-{}{}",
            Uuid::new_v4().simple(),
            Uuid::new_v4().simple()
        );
        let sealed = seal_document(plaintext_doc(&api_key), &keyring, &sealed_keys)?.doc;
        if n == 1 {
            stored_doc = sealed.to_string();
        }
        let at = base_time + chrono::Duration::milliseconds(n as i64);
        batch.push(config::ActiveModel {
            id: Set(id),
            name: Set(format!("config-{n:05}")),
            description: Set(Some("seeded by make bench".into())),
            tenant: Set(format!("tenant-{:02}", n as usize % opts.tenants)),
            tags: Set(json!(["bench"])),
            config_data: Set(SealedJson::new_unchecked(sealed)),
            version: Set(1),
            created_at: Set(at),
            updated_at: Set(at),
        });
        tags.push(config_tag::ActiveModel {
            config_id: Set(id),
            tag: Set("bench".into()),
        });
        ids.push(id);
        if batch.len() == 1000 {
            config::Entity::insert_many(std::mem::take(&mut batch))
                .exec(db)
                .await?;
            config_tag::Entity::insert_many(std::mem::take(&mut tags))
                .exec(db)
                .await?;
        }
    }
    if !batch.is_empty() {
        config::Entity::insert_many(batch).exec(db).await?;
        config_tag::Entity::insert_many(tags).exec(db).await?;
    }
    settle(db).await?;
    let plaintext_value = plaintext_doc("sk-bench-0123456789abcdef0123456789abcdef01234567");
    let plaintext_doc = plaintext_value.to_string();
    Ok(Seeded {
        ids,
        base_ms,
        plaintext_bytes: plaintext_doc.len(),
        plaintext_doc,
        plaintext_value,
        stored_doc,
    })
}

/// A JSON document as a pgbench SQL literal: pgbench reads `:name` as a variable, so a
/// colon between tokens gets a space after it and one inside a string becomes `\u003a`
/// (the same value once parsed).
/// Leaves the database as a running Keyward keeps it after bulk writes: the per-tenant
/// count deltas the triggers appended folded in (a server folds them as it reads; hundreds
/// of thousands left by pgbench's inserts would make the first reads fold them and later
/// ones scan the dead rows until autovacuum came), then vacuumed and analysed.
async fn settle(db: &DatabaseConnection) -> Result<()> {
    keyward::config::count::fold(db).await?;
    db.execute_unprepared("VACUUM ANALYZE").await?;
    Ok(())
}

fn pgbench_literal(json: &str) -> String {
    let mut out = String::with_capacity(json.len() + 64);
    let (mut in_string, mut escaped) = (false, false);
    for c in json.chars() {
        match c {
            ':' if in_string => out.push_str("\\u003a"),
            ':' => out.push_str(": "),
            '\'' => out.push_str("''"),
            _ => out.push(c),
        }
        if in_string {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// The server under test

struct Server {
    child: tokio::sync::Mutex<Option<Child>>,
    pid: u32,
    addr: SocketAddr,
}

#[derive(Clone, Copy)]
struct Target {
    addr: SocketAddr,
    pid: Option<u32>,
}

impl Server {
    async fn start(
        opts: &Opts,
        binary: &Path,
        db_url: &str,
        key: &str,
        break_glass: &str,
    ) -> Result<Self> {
        let addr = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0")?;
            probe.local_addr()?
        };
        let log_path = opts.out_dir.join("server.log");
        let log = std::fs::File::create(&log_path)?;
        let mut command = Command::new(binary);
        command
            .arg("serve")
            .env_remove("RUST_LOG")
            .env("DATABASE_URL", db_url)
            .env("CONFIG_ENCRYPTION_KEY", key)
            .env("KEYWARD_ADMIN_TOKEN", break_glass)
            .env("KEYWARD_BIND", addr.to_string())
            .env("KEYWARD_PROVIDER_HOSTS", "127.0.0.1")
            .env("KEYWARD_DATA_DIR", opts.out_dir.join("data"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true);
        for (k, v) in &opts.server_env {
            command.env(k, v);
        }
        let mut child = command.spawn()?;
        let pid = child.id().context("the server's pid")?;
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait()? {
                bail!(
                    "keyward exited ({status}) before it was ready; see {}",
                    log_path.display()
                );
            }
            let ready = client
                .get(format!("http://{addr}/readyz"))
                .timeout(Duration::from_secs(2))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                break;
            }
            ensure!(
                Instant::now() < deadline,
                "keyward not ready after 60s; see {}",
                log_path.display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        println!(
            "keyward {pid} listening on {addr} (log: {})",
            log_path.display()
        );
        Ok(Self {
            child: tokio::sync::Mutex::new(Some(child)),
            pid,
            addr,
        })
    }

    fn target(&self) -> Target {
        Target {
            addr: self.addr,
            pid: Some(self.pid),
        }
    }

    /// GraphQL requests answered with an error so far, from /metrics.
    async fn graphql_errors(&self, client: &reqwest::Client) -> Result<u64> {
        let text = client
            .get(format!("http://{}/metrics", self.addr))
            .send()
            .await?
            .text()
            .await?;
        Ok(text
            .lines()
            .filter(|l| {
                l.starts_with("keyward_graphql_requests_total{") && !l.contains("outcome=\"OK\"")
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64)
    }

    /// SIGTERM, then SIGKILL if it has not stopped within 10 s.
    async fn stop(&self) {
        let Some(mut child) = self.child.lock().await.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .await;
        if tokio::time::timeout(Duration::from_secs(10), child.wait())
            .await
            .is_err()
        {
            let _ = child.kill().await;
        }
    }
}

struct Api {
    client: reqwest::Client,
    url: String,
    token: String,
}

impl Api {
    fn with_token(&self, token: &str) -> Self {
        Self {
            client: self.client.clone(),
            url: self.url.clone(),
            token: token.to_owned(),
        }
    }

    async fn call(&self, query: &str, variables: Value) -> Result<Value> {
        let answer: Value = self
            .client
            .post(&self.url)
            .bearer_auth(&self.token)
            .json(&json!({"query": query, "variables": variables}))
            .send()
            .await?
            .json()
            .await?;
        ensure!(
            answer.get("errors").is_none_or(Value::is_null),
            "GraphQL errors: {answer}"
        );
        Ok(answer["data"].clone())
    }
}

// ---------------------------------------------------------------------------------------
// wrk

/// A wrk Lua script: each request's body is `prefix .. x .. suffix`, with `x` a random
/// entry of a list, the next entry of the thread's own slice of a list, a counter, or
/// nothing (a fixed body).
struct Script {
    prefix: String,
    suffix: String,
    mode: Mode,
    headers: Vec<(String, String)>,
}

enum Mode {
    Fixed,
    Random(Vec<String>),
    PerThread(Vec<String>),
    Counter,
}

impl Script {
    fn fixed(body: &str) -> Self {
        Self::new(body, "", Mode::Fixed)
    }
    fn random(prefix: &str, suffix: &str, items: Vec<String>) -> Self {
        Self::new(prefix, suffix, Mode::Random(items))
    }
    fn per_thread(prefix: &str, suffix: &str, items: Vec<String>) -> Self {
        Self::new(prefix, suffix, Mode::PerThread(items))
    }
    fn counter(prefix: &str, suffix: &str) -> Self {
        Self::new(prefix, suffix, Mode::Counter)
    }
    fn new(prefix: &str, suffix: &str, mode: Mode) -> Self {
        Self {
            prefix: prefix.into(),
            suffix: suffix.into(),
            mode,
            headers: Vec::new(),
        }
    }
    fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// A body like the ones wrk sends.
    fn sample(&self) -> String {
        let x = match &self.mode {
            Mode::Fixed => "",
            Mode::Random(items) | Mode::PerThread(items) => items[0].as_str(),
            Mode::Counter => "sample",
        };
        format!("{}{x}{}", self.prefix, self.suffix)
    }

    fn lua(&self, token: Option<&str>) -> String {
        let mut lua = String::new();
        lua.push_str(
            "wrk.method = \"POST\"\nwrk.headers[\"Content-Type\"] = \"application/json\"\n",
        );
        if let Some(token) = token {
            let _ = writeln!(lua, "wrk.headers[\"Authorization\"] = \"Bearer {token}\"");
        }
        for (name, value) in &self.headers {
            let _ = writeln!(lua, "wrk.headers[\"{name}\"] = [==[{value}]==]");
        }
        let _ = writeln!(
            lua,
            "local prefix = [==[{}]==]\nlocal suffix = [==[{}]==]",
            self.prefix, self.suffix
        );
        lua.push_str(
            "local threads = 0\n\
             function setup(thread) thread:set(\"tid\", threads); threads = threads + 1 end\n\
             function init(args) math.randomseed(os.time() + 7919 * (tid or 0)) end\n\
             local i = 0\n",
        );
        let list = |items: &[String]| {
            let mut s = String::from("local items = {");
            for item in items {
                let _ = write!(s, "\"{item}\",");
            }
            s.push_str("}\n");
            s
        };
        match &self.mode {
            Mode::Fixed => lua.push_str(
                "local body = prefix .. suffix\n\
                 function request() return wrk.format(nil, nil, nil, body) end\n",
            ),
            Mode::Random(items) => {
                lua.push_str(&list(items));
                lua.push_str(
                    "local n = #items\n\
                     function request() return wrk.format(nil, nil, nil, prefix .. items[math.random(n)] .. suffix) end\n",
                );
            }
            Mode::PerThread(items) => {
                lua.push_str(&list(items));
                let _ = writeln!(lua, "local per = {SESSIONS_PER_THREAD}");
                lua.push_str(
                    "function request()\n  i = i % per + 1\n  \
                     return wrk.format(nil, nil, nil, prefix .. items[(tid or 0) * per + i] .. suffix)\nend\n",
                );
            }
            Mode::Counter => lua.push_str(
                "function request()\n  i = i + 1\n  \
                 return wrk.format(nil, nil, nil, prefix .. (tid or 0) .. \"-\" .. i .. suffix)\nend\n",
            ),
        }
        lua.push_str(
            "function done(summary, latency, requests)\n  \
             io.write(string.format('BENCH_RESULT {\"requests\":%d,\"duration_us\":%d,\"p50_us\":%d,\"p99_us\":%d,\"connect\":%d,\"read\":%d,\"write\":%d,\"status\":%d,\"timeout\":%d}\\n',\n    \
             summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),\n    \
             summary.errors.connect, summary.errors.read, summary.errors.write, summary.errors.status, summary.errors.timeout))\n\
             end\n",
        );
        lua
    }
}

#[derive(Debug, Deserialize)]
struct WrkResult {
    requests: u64,
    duration_us: u64,
    p50_us: u64,
    p99_us: u64,
    connect: u64,
    read: u64,
    write: u64,
    status: u64,
    timeout: u64,
}

async fn run_wrk(
    tools: &Tools,
    target: &Target,
    script: &Script,
    token: Option<&str>,
    connections: u32,
    seconds: u64,
    path: &str,
) -> Result<WrkResult> {
    let dir = tempfile::tempdir()?;
    let lua_path = dir.path().join("script.lua");
    std::fs::write(&lua_path, script.lua(token))?;
    let threads = connections.min(2);
    let out = tokio::time::timeout(
        Duration::from_secs(seconds + 30),
        Command::new(&tools.wrk)
            .arg(format!("-t{threads}"))
            .arg(format!("-c{connections}"))
            .arg(format!("-d{seconds}s"))
            .arg("--timeout=10s")
            .arg("-s")
            .arg(&lua_path)
            .arg(format!("http://{}{path}", target.addr))
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .context("wrk did not finish in time")??;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("BENCH_RESULT "))
        .with_context(|| {
            format!(
                "wrk printed no result: {text}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        })?;
    Ok(serde_json::from_str(line)?)
}

// ---------------------------------------------------------------------------------------
// The fake OpenAI-compatible provider

struct FakeProvider {
    addr: SocketAddr,
}

impl FakeProvider {
    /// A minimal Chat Completions server: reads the request, answers a fixed completion.
    async fn start() -> Result<Self> {
        use axum::routing::post;
        const REPLY: &str = r#"{"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"Paris."},"finish_reason":"stop"}],"usage":{"prompt_tokens":14,"completion_tokens":2,"total_tokens":16}}"#;
        let app = axum::Router::new().route(
            "/v1/chat/completions",
            post(|body: axum::body::Bytes| async move {
                let _ = body.len();
                ([("content-type", "application/json")], REPLY)
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(Self { addr })
    }

    fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

// ---------------------------------------------------------------------------------------
// /proc

fn process_ticks(pid: u32) -> Result<u64> {
    process_cpu(pid).map(|(user, sys)| user + sys)
}

/// User and system CPU ticks of a process so far.
fn process_cpu(pid: u32) -> Result<(u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the parenthesised command: state is field 3, utime 14, stime 15.
    let rest = stat.rsplit_once(')').context("stat format")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Ok((fields[11].parse::<u64>()?, fields[12].parse::<u64>()?))
}

/// Now, as `2026-11-25 14:03 UTC`.
fn utc_now() -> String {
    chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string()
}

/// CPU ticks of the PostgreSQL backends serving `database` (other databases on the same
/// server, and the shared background processes, are left out: other work may share it).
fn pg_cpu_ticks(database: &str) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        // A backend's title: "postgres: [CLUSTER: ]USER DATABASE HOST(PORT) STATE".
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let title = String::from_utf8_lossy(&cmdline);
        if !title.starts_with("postgres: ")
            || !title
                .split(|c: char| c.is_whitespace() || c == '\0')
                .any(|word| word == database)
        {
            continue;
        }
        total += process_ticks(pid.parse().unwrap_or(0)).unwrap_or(0);
    }
    total
}

fn peak_rss_mb(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

fn per_request(ticks: u64, requests: u64, clock_ticks: f64) -> Option<f64> {
    (requests > 0).then(|| ticks as f64 / clock_ticks * 1e6 / requests as f64)
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)] as f64
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| {
            format!(
                "load average {}",
                l.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
            )
        })
        .unwrap_or_default()
}

fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem_gb = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))?
                .split_whitespace()
                .next()?
                .parse::<f64>()
                .ok()
        })
        .map_or(0.0, |kb| kb / 1024.0 / 1024.0);
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_default();
    format!(
        "{cores} cores ({cpu}), {mem_gb:.1} GiB memory, {}",
        load_average()
    )
}

fn unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

// ---------------------------------------------------------------------------------------
// Reporting

fn report_line(m: &Measure) {
    println!(
        "  {:<19} c={:<3} {:>9.0} req/s  p50 {:>7.2} ms  p99 {:>7.2} ms  cpu/req {:>8}  pg cpu/req {:>8}  peak RSS {:>7}  errors {}",
        m.workload,
        m.connections,
        m.rps,
        m.p50_ms,
        m.p99_ms,
        m.cpu_us_per_req
            .map_or("-".into(), |v| format!("{v:.0} µs")),
        m.pg_cpu_us_per_req
            .map_or("-".into(), |v| format!("{v:.0} µs")),
        m.peak_rss_mb.map_or("-".into(), |v| format!("{v:.1} MB")),
        m.errors
    );
}

fn medians(runs: &[Vec<Measure>]) -> Vec<Measure> {
    fn median(mut v: Vec<f64>) -> f64 {
        v.sort_by(f64::total_cmp);
        let n = v.len();
        if n == 0 {
            0.0
        } else if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        }
    }
    fn median_opt(v: Vec<Option<f64>>) -> Option<f64> {
        let v: Vec<f64> = v.into_iter().flatten().collect();
        (!v.is_empty()).then(|| median(v))
    }
    let mut groups: BTreeMap<(usize, u32), Vec<&Measure>> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    for m in runs.iter().flatten() {
        let pos = order
            .iter()
            .position(|w| *w == m.workload)
            .unwrap_or_else(|| {
                order.push(m.workload.clone());
                order.len() - 1
            });
        groups.entry((pos, m.connections)).or_default().push(m);
    }
    groups
        .into_iter()
        .map(|((pos, connections), ms)| Measure {
            workload: order[pos].clone(),
            connections,
            rps: median(ms.iter().map(|m| m.rps).collect()),
            p50_ms: median(ms.iter().map(|m| m.p50_ms).collect()),
            p99_ms: median(ms.iter().map(|m| m.p99_ms).collect()),
            requests: median(ms.iter().map(|m| m.requests as f64).collect()) as u64,
            errors: ms.iter().map(|m| m.errors).sum(),
            cpu_us_per_req: median_opt(ms.iter().map(|m| m.cpu_us_per_req).collect()),
            cpu_sys_us_per_req: median_opt(ms.iter().map(|m| m.cpu_sys_us_per_req).collect()),
            pg_cpu_us_per_req: median_opt(ms.iter().map(|m| m.pg_cpu_us_per_req).collect()),
            peak_rss_mb: median_opt(ms.iter().map(|m| m.peak_rss_mb).collect()),
        })
        .collect()
}

fn find<'a>(results: &'a [Measure], workload: &str, connections: u32) -> Option<&'a Measure> {
    results
        .iter()
        .find(|m| m.workload == workload && m.connections == connections)
}

/// Which database figure each Keyward workload is compared with.
fn baseline_of(workload: &str) -> Option<&'static str> {
    match workload {
        "config-read" | "configs-page" | "configs-page-total" => Some("pgbench-select"),
        "config-decrypt" | "create-config" => Some("pgbench-insert"),
        "send-proxy" => Some("fake-direct"),
        _ => None,
    }
}

fn print_table(title: &str, results: &[Measure]) {
    println!("\n{title}");
    println!(
        "{:<19} {:>4} {:>9} {:>8} {:>8} {:>9} {:>9} {:>8} {:>6} | {:<15} {:>9} {:>8} {:>8} {:>7}",
        "workload",
        "conn",
        "req/s",
        "p50 ms",
        "p99 ms",
        "cpu/req",
        "pgcpu/req",
        "RSS MB",
        "errors",
        "compared with",
        "req/s",
        "p50 ms",
        "p99 ms",
        "ratio"
    );
    for m in results {
        let mut line = format!(
            "{:<19} {:>4} {:>9.0} {:>8.2} {:>8.2} {:>9} {:>9} {:>8} {:>6}",
            m.workload,
            m.connections,
            m.rps,
            m.p50_ms,
            m.p99_ms,
            m.cpu_us_per_req.map_or("-".into(), |v| format!("{v:.0}µs")),
            m.pg_cpu_us_per_req
                .map_or("-".into(), |v| format!("{v:.0}µs")),
            m.peak_rss_mb.map_or("-".into(), |v| format!("{v:.1}")),
            m.errors,
        );
        if let Some(base) = baseline_of(&m.workload).and_then(|b| find(results, b, m.connections)) {
            let _ = write!(
                line,
                " | {:<15} {:>9.0} {:>8.2} {:>8.2} {:>6.1}%",
                base.workload,
                base.rps,
                base.p50_ms,
                base.p99_ms,
                100.0 * m.rps / base.rps
            );
        }
        println!("{line}");
    }
}

/// One of the issue's targets, as measured.
struct Verdict {
    what: String,
    measured: String,
    goal: String,
    met: Option<bool>,
}

fn verdicts(results: &[Measure], fernet_us: f64) -> Vec<Verdict> {
    let ratio = |a: &str, b: &str| Some(find(results, a, 16)?.rps / find(results, b, 16)?.rps);
    let mut out = Vec::new();
    let mut share = |what: &str, value: Option<f64>, goal: f64| {
        out.push(Verdict {
            what: what.into(),
            measured: value.map_or("not measured".into(), |v| format!("{:.1}%", 100.0 * v)),
            goal: format!("≥ {:.0}%", 100.0 * goal),
            met: value.map(|v| v >= goal),
        })
    };
    share(
        "config read / pgbench select, 16 connections",
        ratio("config-read", "pgbench-select"),
        0.5,
    );
    share(
        "decrypted (audited) read / pgbench insert, 16",
        ratio("config-decrypt", "pgbench-insert"),
        0.5,
    );
    share(
        "createConfig / pgbench insert, 16",
        ratio("create-config", "pgbench-insert"),
        0.5,
    );
    share(
        "configs(first: 20) page / config read, 16",
        ratio("configs-page", "config-read"),
        0.3,
    );
    share(
        "the same page with totalCount / config read, 16",
        ratio("configs-page-total", "config-read"),
        0.3,
    );
    out.push(Verdict {
        what: "per-field Fernet encrypt (this build, in process)".into(),
        measured: format!("{fernet_us:.2} µs"),
        goal: "≤ 2 µs".into(),
        met: fernet_us.is_finite().then_some(fernet_us <= 2.0),
    });
    let peak = results
        .iter()
        .filter_map(|m| m.peak_rss_mb)
        .fold(None, |a: Option<f64>, b| Some(a.map_or(b, |a| a.max(b))));
    out.push(Verdict {
        what: "Keyward's peak RSS under load (any workload)".into(),
        measured: peak.map_or("not measured".into(), |p| format!("{p:.1} MB")),
        goal: "≤ 64 MB".into(),
        met: peak.map(|p| p <= 64.0),
    });
    for c in [1, 16, 64] {
        if let (Some(k), Some(f)) = (
            find(results, "send-proxy", c),
            find(results, "fake-direct", c),
        ) {
            let (d50, d99) = (k.p50_ms - f.p50_ms, k.p99_ms - f.p99_ms);
            out.push(Verdict {
                what: format!(
                    "proxy overhead at {c} connection{} (sendMessage minus the fake provider)",
                    if c == 1 { "" } else { "s" }
                ),
                measured: format!("p50 +{d50:.2} ms, p99 +{d99:.2} ms"),
                goal: if c == 1 {
                    "p50 ≤ 2 ms".into()
                } else {
                    "(queueing)".into()
                },
                met: (c == 1).then_some(d50 <= 2.0),
            });
        }
    }
    out
}

fn print_targets(results: &[Measure], fernet_us: f64) {
    println!("\ntargets (issue 9)");
    for v in verdicts(results, fernet_us) {
        println!(
            "  {:<66} {:>24}  (goal {})  {}",
            v.what,
            v.measured,
            v.goal,
            match v.met {
                Some(true) => "met",
                Some(false) => "MISSED",
                None => "",
            }
        );
    }
}

/// Everything tests/bench/README.md records, as Markdown: the conditions of each run, the
/// medians beside the database's own figures, and the targets.
fn markdown(opts: &Opts, results: &[Measure], conditions: &[Conditions], fernet_us: f64) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "Measured {} on {}.\n\n{} run{} (`BENCH_RUNS`), each on a fresh database of {} configs over {} tenants; {} s per measurement after {} s of warm-up; wrk and pgbench with {} connections{}.\n",
        conditions.first().map_or_else(utc_now, |c| c.at.clone()),
        machine(),
        conditions.len(),
        if conditions.len() == 1 {
            ""
        } else {
            "s, medians below"
        },
        opts.configs,
        opts.tenants,
        opts.duration,
        opts.warmup,
        opts.connections
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(" and "),
        if opts.workloads.is_some() {
            " (a subset of the workloads: BENCH_WORKLOADS)"
        } else {
            ""
        },
    );
    md.push_str(
        "| run | started | machine | load before → after | took |\n|---|---|---|---|---|\n",
    );
    for c in conditions {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} → {} | {:.1} min |",
            c.run,
            c.at,
            c.quiet,
            c.load_before.trim_start_matches("load average "),
            c.load_after.trim_start_matches("load average "),
            c.seconds / 60.0
        );
    }
    md.push_str("\n| workload | conns | req/s | p50 ms | p99 ms | Keyward CPU/req (of which kernel) | PostgreSQL CPU/req | Keyward peak RSS | errors | compared with | its req/s | ratio |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|\n");
    for m in results {
        let base = baseline_of(&m.workload).and_then(|b| find(results, b, m.connections));
        let _ = writeln!(
            md,
            "| {} | {} | {:.0} | {:.2} | {:.2} | {} | {} | {} | {} | {} | {} | {} |",
            m.workload,
            m.connections,
            m.rps,
            m.p50_ms,
            m.p99_ms,
            match (m.cpu_us_per_req, m.cpu_sys_us_per_req) {
                (Some(c), Some(s)) => format!("{c:.0} µs ({s:.0} µs)"),
                (Some(c), None) => format!("{c:.0} µs"),
                _ => "–".into(),
            },
            m.pg_cpu_us_per_req
                .map_or("–".into(), |v| format!("{v:.0} µs")),
            m.peak_rss_mb.map_or("–".into(), |v| format!("{v:.1} MB")),
            m.errors,
            base.map_or("", |b| b.workload.as_str()),
            base.map_or(String::new(), |b| format!("{:.0}", b.rps)),
            base.map_or(String::new(), |b| format!("{:.1}%", 100.0 * m.rps / b.rps)),
        );
    }
    md.push_str("\n| target (issue 9) | measured | goal | |\n|---|---|---|---|\n");
    for v in verdicts(results, fernet_us) {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} |",
            v.what,
            v.measured,
            v.goal,
            match v.met {
                Some(true) => "met",
                Some(false) => "**missed**",
                None => "",
            }
        );
    }
    md
}
