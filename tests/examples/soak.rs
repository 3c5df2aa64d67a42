//! The soak run (issue 7 point 8), driven by `tests/soak.sh`: starts the release server on
//! a fresh PostgreSQL database, loopback only, and runs mixed traffic (creates, reads,
//! decrypts, updates, deletes, lists, echo chat sessions) from several workers until the
//! time or the request budget runs out. Every 10 s it prints the server's RSS (from
//! /proc/PID/status), requests so far and errors by kind; at the end it checks on a direct
//! connection that every acknowledged write is present (and every acknowledged delete
//! absent), stops the server with SIGTERM, drops the database and prints a summary.
//!
//! Exit status: 0 when nothing acknowledged was lost, no answer was wrong, and the server
//! neither crashed nor answered with a 5xx; 1 otherwise.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, Database, Statement};
use secrecy::ExposeSecret;
use serde_json::{Value, json};

struct Args {
    server: String,
    minutes: f64,
    max_requests: u64,
    workers: usize,
}

fn args() -> Args {
    let mut args = Args {
        server: "target/release/keyward".into(),
        minutes: 10.0,
        max_requests: 2_000_000,
        workers: 8,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--server" => args.server = value,
            "--minutes" => args.minutes = value.parse().expect("minutes"),
            "--max-requests" => args.max_requests = value.parse().expect("a count"),
            "--workers" => args.workers = value.parse().expect("a count"),
            other => panic!("unknown flag {other}"),
        }
    }
    args
}

/// A small, seedable generator: the traffic mix needs no more.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// What the server acknowledged to one worker. Only that worker writes these configs and
/// sessions, so the final state must match exactly.
#[derive(Default)]
struct Acknowledged {
    /// id → (name, version, description, api_key)
    configs: HashMap<String, (String, i64, String, String)>,
    deleted: Vec<String>,
    /// session id → messages stored (user + assistant per turn)
    sessions: HashMap<String, i64>,
}

#[derive(Default)]
struct Stats {
    /// (operation, outcome) → count; outcome is "ok", an extensions.code, or "http-NNN".
    outcomes: BTreeMap<(String, String), u64>,
    /// operation → latencies in µs
    latencies: BTreeMap<String, Vec<u32>>,
    /// answers that were well-formed but wrong (a decrypt that did not give back the key…)
    wrong: Vec<String>,
}

struct Shared {
    client: reqwest::Client,
    url: String,
    admin: String,
    requests: AtomicU64,
    max_requests: u64,
    deadline: Instant,
    stop: AtomicBool,
    stats: Mutex<Stats>,
}

impl Shared {
    fn more(&self) -> bool {
        !self.stop.load(Ordering::Relaxed)
            && Instant::now() < self.deadline
            && self.requests.load(Ordering::Relaxed) < self.max_requests
    }

    /// One GraphQL request; Ok(data) or Err(outcome), tallied under `op`.
    async fn gql(&self, op: &str, query: &str, variables: Value) -> Result<Value, String> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let res = self
            .client
            .post(&self.url)
            .bearer_auth(&self.admin)
            .json(&json!({ "query": query, "variables": variables }))
            .send()
            .await;
        let outcome = match res {
            Err(e) => Err(if e.is_timeout() {
                "client-timeout".to_owned()
            } else {
                "connection-error".to_owned()
            }),
            Ok(res) => {
                let status = res.status();
                match res.json::<Value>().await {
                    Err(_) => Err(format!("http-{}", status.as_u16())),
                    Ok(body) => match body["errors"][0]["extensions"]["code"].as_str() {
                        Some(code) if status.is_server_error() => {
                            Err(format!("http-{}-{code}", status.as_u16()))
                        }
                        Some(code) => Err(code.to_owned()),
                        None if status.is_success() => Ok(body["data"].clone()),
                        None => Err(format!("http-{}", status.as_u16())),
                    },
                }
            }
        };
        let micros = started.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
        let mut stats = self.stats.lock().unwrap();
        let label = match &outcome {
            Ok(_) => "ok".to_owned(),
            Err(e) => e.clone(),
        };
        *stats.outcomes.entry((op.to_owned(), label)).or_default() += 1;
        stats
            .latencies
            .entry(op.to_owned())
            .or_default()
            .push(micros);
        outcome
    }

    fn wrong(&self, what: String) {
        self.stats.lock().unwrap().wrong.push(what);
    }
}

const CREATE: &str = "mutation($i: CreateConfigInput!) { createConfig(input: $i) { id version } }";
const READ: &str =
    "query($id: ID!) { config(id: $id) { id name version description sensitivePaths } }";
const REVEAL: &str = "query($id: ID!) { config(id: $id, decrypt: true) { configData version } }";
const UPDATE: &str = "mutation($id: ID!, $i: UpdateConfigInput!) { updateConfig(id: $id, input: $i) { version description } }";
const DELETE: &str = "mutation($id: ID!) { deleteConfig(id: $id) }";
const LIST: &str =
    "query($s: String) { configs(first: 20, search: $s) { totalCount nodes { id version } } }";
const SESSION: &str = "mutation($i: CreateSessionInput!) { createSession(input: $i) { id } }";
const SEND: &str =
    "mutation($s: ID!, $c: String!) { sendMessage(sessionId: $s, content: $c) { role content } }";

fn document(api_key: &str, n: u64) -> Value {
    json!({
        "providers": [{ "module": "provider-echo", "config": { "api_key": api_key, "model": "echo", "max_tokens": n % 4096 } }],
        "notes": format!("soak document {n}"),
        "credentials": { "user": "soak", "password": format!("pw-{n}") },
    })
}

async fn worker(shared: Arc<Shared>, id: usize) -> Acknowledged {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (id as u64 + 1).wrapping_mul(0x1000_0001));
    let mut ack = Acknowledged::default();
    let mut live: Vec<String> = Vec::new();
    let mut n = 0u64;
    // A config for chat sessions that this worker never deletes.
    let chat_config = loop {
        if !shared.more() {
            return ack;
        }
        let key = format!("sk-soak-chat-{id}");
        if let Ok(data) = shared
            .gql(
                "create",
                CREATE,
                json!({ "i": { "name": format!("chat-{id}"), "configData": document(&key, 0) } }),
            )
            .await
        {
            let config = data["createConfig"]["id"].as_str().unwrap().to_owned();
            ack.configs.insert(
                config.clone(),
                (format!("chat-{id}"), 1, String::new(), key),
            );
            break config;
        }
    };
    let mut sessions: Vec<String> = Vec::new();

    while shared.more() {
        n += 1;
        let roll = rng.below(100);
        let pick = |rng: &mut Rng, live: &[String]| -> Option<String> {
            (!live.is_empty()).then(|| live[rng.below(live.len() as u64) as usize].clone())
        };
        match roll {
            // create
            0..=17 => {
                let name = format!("soak-{id}-{n}");
                let key = format!("sk-soak-{id}-{n}-{}", rng.next());
                if let Ok(data) = shared
                    .gql("create", CREATE, json!({ "i": { "name": name, "configData": document(&key, n), "tags": ["soak"] } }))
                    .await
                {
                    let config = data["createConfig"]["id"].as_str().unwrap().to_owned();
                    ack.configs
                        .insert(config.clone(), (name, 1, String::new(), key));
                    live.push(config);
                }
            }
            // read
            18..=42 => {
                let Some(config) = pick(&mut rng, &live) else {
                    continue;
                };
                if let Ok(data) = shared.gql("read", READ, json!({ "id": config })).await {
                    let (_, version, _, _) = &ack.configs[&config];
                    if data["config"]["version"].as_i64() != Some(*version) {
                        shared.wrong(format!(
                            "read {config}: version {} != acknowledged {version}",
                            data["config"]["version"]
                        ));
                    }
                }
            }
            // decrypt
            43..=52 => {
                let Some(config) = pick(&mut rng, &live) else {
                    continue;
                };
                if let Ok(data) = shared.gql("decrypt", REVEAL, json!({ "id": config })).await {
                    let (_, _, _, key) = &ack.configs[&config];
                    let got = &data["config"]["configData"]["providers"][0]["config"]["api_key"];
                    if got.as_str() != Some(key.as_str()) {
                        shared.wrong(format!("decrypt {config}: the key did not round-trip"));
                    }
                }
            }
            // update, with the acknowledged version
            53..=67 => {
                let Some(config) = pick(&mut rng, &live) else {
                    continue;
                };
                let (name, version, _, key) = ack.configs[&config].clone();
                let description = format!("d{n}");
                let mut input = json!({ "description": description, "expectedVersion": version });
                let mut new_key = key.clone();
                if rng.below(2) == 0 {
                    new_key = format!("sk-soak-{id}-{n}-u{}", rng.next());
                    input["configData"] = document(&new_key, n);
                }
                match shared
                    .gql("update", UPDATE, json!({ "id": config, "i": input }))
                    .await
                {
                    Ok(data) => {
                        let v = data["updateConfig"]["version"].as_i64().unwrap_or(-1);
                        if v != version + 1 {
                            shared.wrong(format!("update {config}: version {v} after {version}"));
                        }
                        ack.configs.insert(config, (name, v, description, new_key));
                    }
                    Err(code) if code == "CONFLICT" => {
                        shared.wrong(format!("update {config}: CONFLICT with no other writer"));
                    }
                    Err(_) => {
                        // Unknown whether it committed: stop tracking this config's content.
                        live.retain(|c| c != &config);
                        ack.configs.remove(&config);
                    }
                }
            }
            // delete (keep a working set)
            68..=72 => {
                if live.len() < 20 {
                    continue;
                }
                let config = live.swap_remove(rng.below(live.len() as u64) as usize);
                match shared.gql("delete", DELETE, json!({ "id": config })).await {
                    Ok(data) if data["deleteConfig"] == true => {
                        ack.configs.remove(&config);
                        ack.deleted.push(config);
                    }
                    Ok(_) => shared.wrong(format!("delete {config}: not true")),
                    Err(_) => {
                        ack.configs.remove(&config);
                    }
                }
            }
            // list and search
            73..=82 => {
                let search = (rng.below(2) == 0).then(|| format!("soak-{id}-"));
                let _ = shared.gql("list", LIST, json!({ "s": search })).await;
            }
            // echo chat: a new session now and then, a turn on one otherwise
            _ => {
                if sessions.is_empty() || rng.below(10) == 0 {
                    if let Ok(data) = shared
                        .gql(
                            "session",
                            SESSION,
                            json!({ "i": { "configId": chat_config } }),
                        )
                        .await
                    {
                        let session = data["createSession"]["id"].as_str().unwrap().to_owned();
                        ack.sessions.insert(session.clone(), 0);
                        sessions.push(session);
                    }
                    continue;
                }
                let session = sessions[rng.below(sessions.len() as u64) as usize].clone();
                let content = format!("hello {n} from {id}");
                match shared
                    .gql("message", SEND, json!({ "s": session, "c": content }))
                    .await
                {
                    Ok(data) => {
                        if data["sendMessage"]["content"].as_str() != Some(content.as_str()) {
                            shared.wrong(format!("message {session}: echo did not echo"));
                        }
                        *ack.sessions.get_mut(&session).unwrap() += 2;
                    }
                    Err(_) => {
                        // Unknown how much was stored: stop checking this session.
                        ack.sessions.remove(&session);
                        sessions.retain(|s| s != &session);
                    }
                }
            }
        }
    }
    ack
}

/// VmRSS, VmHWM (kB) and Threads of a process.
fn proc_status(pid: u32) -> Option<(u64, u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
    };
    Some((field("VmRSS:")?, field("VmHWM:")?, field("Threads:")?))
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    f64::from(sorted[i]) / 1000.0
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::main]
async fn main() {
    let args = args();
    let admin_url = tests::postgres_admin_url();
    let database = format!("keyward_soak_{}", uuid::Uuid::new_v4().simple());
    let admin_db = Database::connect(admin_url.clone())
        .await
        .expect("PostgreSQL at KEYWARD_TEST_PG_URL");
    admin_db
        .execute_unprepared(&format!("CREATE DATABASE {database}"))
        .await
        .expect("create the soak database");
    let url = format!("{}/{database}", admin_url.rsplit_once('/').unwrap().0);
    let dir = tempfile::tempdir().unwrap();
    let key = keyward::crypto::Keyring::generate_key();
    let admin = format!("soak-admin-{}", uuid::Uuid::new_v4().simple());

    let mut child = Command::new(&args.server)
        .args(["serve", "--log-format", "json"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", &url)
        .env("KEYWARD_DATA_DIR", dir.path())
        .env("CONFIG_ENCRYPTION_KEY", key.expose_secret())
        .env("KEYWARD_ADMIN_TOKEN", &admin)
        .env("KEYWARD_BIND", "127.0.0.1:0")
        .env("RUST_LOG", "warn,keyward::startup=info")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("the server binary starts (build it with cargo build --release -p keyward)");
    let pid = child.id();
    let stderr = child.stderr.take().unwrap();
    let mut server = Server(child);
    let (line_tx, lines) = std::sync::mpsc::channel::<String>();
    let server_errors = Arc::new(AtomicU64::new(0));
    let server_warnings = Arc::new(AtomicU64::new(0));
    {
        let (errors, warnings) = (server_errors.clone(), server_warnings.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let json: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
                match json["level"].as_str() {
                    Some("ERROR") => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        eprintln!("server error: {line}");
                    }
                    Some("WARN") => {
                        warnings.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {}
                }
                let _ = line_tx.send(line);
            }
        });
    }
    let started_wait = Instant::now();
    let address = loop {
        let line = lines
            .recv_timeout(Duration::from_secs(60).saturating_sub(started_wait.elapsed()))
            .expect("the server logs that it listens");
        let json: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
        if json["message"] == "keyward is listening" {
            break json["address"].as_str().unwrap().to_owned();
        }
    };
    assert!(
        address.starts_with("127.0.0.1:"),
        "loopback only: {address}"
    );
    println!(
        "soak: server pid {pid} on {address}, database {database}, {} workers, {} min, at most {} requests",
        args.workers, args.minutes, args.max_requests
    );

    let shared = Arc::new(Shared {
        client: reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap(),
        url: format!("http://{address}/graphql"),
        admin,
        requests: AtomicU64::new(0),
        max_requests: args.max_requests,
        deadline: Instant::now() + Duration::from_secs_f64(args.minutes * 60.0),
        stop: AtomicBool::new(false),
        stats: Mutex::new(Stats::default()),
    });
    let started = Instant::now();
    let workers: Vec<_> = (0..args.workers)
        .map(|w| tokio::spawn(worker(shared.clone(), w)))
        .collect();

    // Samples every 10 s until the workers are done.
    let mut samples: Vec<(f64, u64, u64, u64, u64)> = Vec::new();
    // Per interval: requests per second, and each operation's median latency, so that a
    // slowdown can be pinned on an operation (or on the machine: load average).
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut last = (0.0f64, 0u64);
    let mut sample = |samples: &mut Vec<(f64, u64, u64, u64, u64)>| {
        let (rss, hwm, threads) = proc_status(pid).unwrap_or((0, 0, 0));
        let requests = shared.requests.load(Ordering::Relaxed);
        let t = started.elapsed().as_secs_f64();
        samples.push((t, rss, hwm, threads, requests));
        let (errors, medians) = {
            let stats = shared.stats.lock().unwrap();
            let mut by: BTreeMap<String, u64> = BTreeMap::new();
            for ((_, outcome), n) in &stats.outcomes {
                if outcome != "ok" {
                    *by.entry(outcome.clone()).or_default() += n;
                }
            }
            let mut medians = String::new();
            for (op, lat) in &stats.latencies {
                let from = seen.insert(op.clone(), lat.len()).unwrap_or(0);
                let mut recent = lat[from.min(lat.len())..].to_vec();
                recent.sort_unstable();
                medians.push_str(&format!(" {op}={:.1}", percentile(&recent, 0.5)));
            }
            (by, medians)
        };
        let load = std::fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|l| l.split_whitespace().next().map(str::to_owned))
            .unwrap_or_default();
        let rps = (requests - last.1) as f64 / (t - last.0).max(0.001);
        last = (t, requests);
        println!(
            "t={t:>6.0}s rss={:>6.1}MiB hwm={:>6.1}MiB threads={threads} requests={requests:>8} rps={rps:>5.0} load={load} p50ms:{medians} errors={errors:?}",
            rss as f64 / 1024.0,
            hwm as f64 / 1024.0,
        );
    };
    sample(&mut samples);
    let mut ticker = tokio::time::interval(Duration::from_secs(10));
    ticker.tick().await;
    while workers.iter().any(|w| !w.is_finished()) {
        tokio::select! {
            _ = ticker.tick() => sample(&mut samples),
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
        if server.0.try_wait().ok().flatten().is_some() {
            println!("soak: THE SERVER EXITED during the run");
            shared.stop.store(true, Ordering::SeqCst);
        }
    }
    sample(&mut samples);
    let elapsed = started.elapsed();
    let mut acknowledged = Vec::new();
    for w in workers {
        acknowledged.push(w.await.expect("a worker"));
    }

    // Every acknowledged write is present, every acknowledged delete absent.
    let db = Database::connect(url.clone())
        .await
        .expect("a direct connection");
    let backend = db.get_database_backend();
    let rows = db
        .query_all_raw(Statement::from_string(
            backend,
            "SELECT id::text AS id, name, version, coalesce(description, '') AS description FROM configs",
        ))
        .await
        .expect("read configs");
    let stored: HashMap<String, (String, i64, String)> = rows
        .iter()
        .map(|r| {
            let version: i32 = r.try_get("", "version").unwrap();
            (
                r.try_get("", "id").unwrap(),
                (
                    r.try_get("", "name").unwrap(),
                    i64::from(version),
                    r.try_get("", "description").unwrap(),
                ),
            )
        })
        .collect();
    let rows = db
        .query_all_raw(Statement::from_string(
            backend,
            "SELECT s.id::text AS id, s.message_count AS n, (SELECT count(*) FROM messages m WHERE m.session_id = s.id) AS m FROM sessions s",
        ))
        .await
        .expect("read sessions");
    let stored_sessions: HashMap<String, (i64, i64)> = rows
        .iter()
        .map(|r| {
            let n: i32 = r.try_get("", "n").unwrap();
            let m: i64 = r.try_get("", "m").unwrap();
            (r.try_get("", "id").unwrap(), (i64::from(n), m))
        })
        .collect();
    let (mut checked, mut missing) = (0usize, Vec::<String>::new());
    for ack in &acknowledged {
        for (id, (name, version, description, _)) in &ack.configs {
            checked += 1;
            match stored.get(id) {
                None => missing.push(format!("config {id} ({name}) is missing")),
                Some((n, v, d)) if n != name || v != version || d != description => missing
                    .push(format!("config {id}: stored ({n}, v{v}, {d}) != acknowledged ({name}, v{version}, {description})")),
                Some(_) => {}
            }
        }
        for id in &ack.deleted {
            checked += 1;
            if stored.contains_key(id) {
                missing.push(format!("config {id} was deleted but is still there"));
            }
        }
        for (id, count) in &ack.sessions {
            checked += 1;
            match stored_sessions.get(id) {
                None => missing.push(format!("session {id} is missing")),
                Some((n, m)) if n != count || m != count => missing.push(format!(
                    "session {id}: {n} counted, {m} stored, {count} acknowledged"
                )),
                Some(_) => {}
            }
        }
    }
    db.close().await.ok();

    // Shut the server down as an orchestrator would, and time it.
    let term = Instant::now();
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let mut exit = None;
    while term.elapsed() < Duration::from_secs(30) {
        if let Some(status) = server.0.try_wait().unwrap() {
            exit = Some(status);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let shutdown = term.elapsed();
    let _ = admin_db
        .execute_unprepared(&format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
        .await;

    // The report.
    let stats = shared.stats.lock().unwrap();
    let total: u64 = stats.outcomes.values().sum();
    println!("\n== soak summary ==");
    println!(
        "duration {:.1} s, {total} requests ({:.0}/s), {} workers",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64(),
        args.workers
    );
    println!("by operation (count, ms p50 / p99 / max):");
    let mut by_op: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for ((op, outcome), n) in &stats.outcomes {
        let e = by_op.entry(op).or_default();
        e.0 += n;
        if outcome != "ok" {
            e.1 += n;
        }
    }
    for (op, lat) in &stats.latencies {
        let mut sorted = lat.clone();
        sorted.sort_unstable();
        let (n, failed) = by_op.get(op.as_str()).copied().unwrap_or_default();
        println!(
            "  {op:<8} {n:>8} ({failed} failed)  {:>7.1} / {:>7.1} / {:>8.1}",
            percentile(&sorted, 0.5),
            percentile(&sorted, 0.99),
            percentile(&sorted, 1.0)
        );
    }
    let mut errors: BTreeMap<&str, u64> = BTreeMap::new();
    for ((_, outcome), n) in &stats.outcomes {
        if outcome != "ok" {
            *errors.entry(outcome).or_default() += n;
        }
    }
    println!("errors by kind: {errors:?}");
    println!(
        "server log: {} error lines, {} warning lines",
        server_errors.load(Ordering::Relaxed),
        server_warnings.load(Ordering::Relaxed)
    );
    println!("RSS over time (s, MiB):");
    for (t, rss, _, threads, requests) in &samples {
        println!(
            "  {t:>6.0}  {:>7.1}  threads {threads:>3}  requests {requests}",
            *rss as f64 / 1024.0
        );
    }
    if let (Some(first), Some(last)) = (samples.get(1).or(samples.first()), samples.last()) {
        let peak = samples.iter().map(|s| s.2).max().unwrap_or(0);
        println!(
            "RSS first sample {:.1} MiB, last {:.1} MiB, peak (VmHWM) {:.1} MiB",
            first.1 as f64 / 1024.0,
            last.1 as f64 / 1024.0,
            peak as f64 / 1024.0
        );
    }
    println!(
        "acknowledged writes checked: {checked}, missing or different: {}",
        missing.len()
    );
    for m in missing.iter().take(20) {
        println!("  {m}");
    }
    println!("wrong answers: {}", stats.wrong.len());
    for w in stats.wrong.iter().take(20) {
        println!("  {w}");
    }
    println!(
        "shutdown after SIGTERM: {:?} in {:.2} s",
        exit.map(|s| s.code()),
        shutdown.as_secs_f64()
    );
    let server_faults = errors
        .keys()
        .any(|e| e.starts_with("http-5") || *e == "INTERNAL" || *e == "connection-error");
    let ok = missing.is_empty()
        && stats.wrong.is_empty()
        && !server_faults
        && exit.is_some_and(|s| s.success());
    println!("verdict: {}", if ok { "PASS" } else { "FAIL" });
    std::process::exit(if ok { 0 } else { 1 });
}
