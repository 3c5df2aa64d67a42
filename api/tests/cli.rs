//! The `keyward` binary as a user runs it (CONTRACT section 1): keygen, encrypt/decrypt,
//! migrate, token create, schema, and `serve`'s first run for a newcomer (issue 2 point 6).
//!
//! Every child starts from an empty environment plus what the test sets, so nothing of the
//! developer's shell leaks in. Servers bind port 0 and announce their port in the
//! "keyward is listening" log line; a guard kills each one, even when a test panics.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE;
use keyward::crypto::{Keyring, decrypt_value, encrypt_value};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

const STARTUP: Duration = Duration::from_secs(60);

/// `keyward` with an empty environment (plus RUST_BACKTRACE off and no colours).
fn keyward() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_keyward"));
    cmd.env_clear().env("NO_COLOR", "1").stdin(Stdio::null());
    cmd
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("keyward runs")
}

fn run_with_stdin(cmd: &mut Command, input: &str) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("keyward runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().expect("keyward exits")
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).expect("UTF-8 output")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn assert_success(out: &Output) {
    assert!(
        out.status.success(),
        "keyward failed ({}): {}",
        out.status,
        stderr(out)
    );
}

/// Drops ANSI colour sequences, in case the log format colours its fields anyway.
fn plain(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn a_key() -> SecretString {
    Keyring::generate_key()
}

#[test]
fn keygen_prints_a_fresh_fernet_key() {
    let first = run(keyward().arg("keygen"));
    assert_success(&first);
    let key = stdout(&first).trim().to_owned();
    assert_eq!(stdout(&first), format!("{key}\n"), "one line, the key only");
    assert_eq!(key.len(), 44, "URL-safe base64 of 32 bytes, padded");
    assert_eq!(URL_SAFE.decode(&key).expect("URL-safe base64").len(), 32);
    let keyring = Keyring::parse(&SecretString::from(key.clone())).expect("a Fernet key");
    assert_eq!(&keyring.decrypt(&keyring.encrypt(b"x")).unwrap()[..], b"x");

    let second = run(keyward().arg("keygen"));
    assert_success(&second);
    assert_ne!(stdout(&second).trim(), key, "each run makes a new key");
}

#[test]
fn encrypt_and_decrypt_round_trip_through_arguments_and_standard_input() {
    let key = a_key();
    let key = key.expose_secret();
    let keyring = Keyring::parse(&SecretString::from(key.to_owned())).unwrap();

    for value in [
        "sk-test-cli-0123456789",
        "h\u{e9}llo w\u{f6}rld \u{1f511}",
        "with spaces and \"quotes\"",
    ] {
        // encrypt VALUE, decrypt from standard input.
        let enc = run(keyward().args(["encrypt", "--key", key, value]));
        assert_success(&enc);
        let token = stdout(&enc).trim().to_owned();
        assert!(token.starts_with("enc:gAAAAA"), "{token}");
        assert!(!stdout(&enc).contains(value));
        assert_eq!(
            decrypt_value(&keyring, &token).unwrap().expose_secret(),
            value,
            "the library opens it"
        );
        let dec = run_with_stdin(
            keyward().args(["decrypt", "--key", key]),
            &format!("{token}\n"),
        );
        assert_success(&dec);
        assert_eq!(stdout(&dec), format!("{value}\n"));

        // encrypt from standard input (one trailing newline is not part of the value),
        // decrypt VALUE.
        let enc = run_with_stdin(
            keyward().args(["encrypt", "--key", key]),
            &format!("{value}\n"),
        );
        assert_success(&enc);
        let token = stdout(&enc).trim().to_owned();
        assert!(token.starts_with("enc:"), "{token}");
        let dec = run(keyward().args(["decrypt", "--key", key, &token]));
        assert_success(&dec);
        assert_eq!(stdout(&dec), format!("{value}\n"));
    }

    // The key may come from CONFIG_ENCRYPTION_KEY, and a ring of several keys decrypts
    // what any of them made.
    let made_by_library = encrypt_value(&keyring, "from-the-library");
    let newer = a_key();
    let ring = format!("{},{key}", newer.expose_secret());
    let dec = run(keyward()
        .env("CONFIG_ENCRYPTION_KEY", &ring)
        .args(["decrypt", &made_by_library]));
    assert_success(&dec);
    assert_eq!(stdout(&dec), "from-the-library\n");
    let enc = run(keyward()
        .env("CONFIG_ENCRYPTION_KEY", &ring)
        .args(["encrypt", "v"]));
    assert_success(&enc);
    let newer_ring = Keyring::parse(&newer).unwrap();
    assert!(
        decrypt_value(&newer_ring, stdout(&enc).trim()).is_ok(),
        "the first key of the ring encrypts"
    );
}

#[test]
fn decrypt_with_a_wrong_key_fails_with_a_clear_message() {
    let (right, wrong) = (a_key(), a_key());
    let token = encrypt_value(&Keyring::parse(&right).unwrap(), "sk-test-wrong-key-secret");
    let out = run(keyward().args(["decrypt", "--key", wrong.expose_secret(), &token]));
    assert!(!out.status.success(), "a wrong key must not succeed");
    assert!(out.stdout.is_empty(), "nothing on stdout: {}", stdout(&out));
    let err = stderr(&out);
    assert!(
        err.contains("not an enc: token these keys can decrypt"),
        "{err}"
    );
    assert!(
        !err.contains(wrong.expose_secret()),
        "the key is not echoed"
    );

    // A value that is not enc: at all, and a key that is not a key, fail the same way.
    let out = run(keyward().args(["decrypt", "--key", right.expose_secret(), "plain"]));
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("not an enc: token"),
        "{}",
        stderr(&out)
    );
    let out = run(keyward().args(["encrypt", "--key", "not-a-fernet-key", "v"]));
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("not a Fernet key"),
        "{}",
        stderr(&out)
    );
    assert!(
        !stderr(&out).contains("not-a-fernet-key"),
        "the bad key is not echoed: {}",
        stderr(&out)
    );
}

fn sqlite_tables(url: &str) -> Vec<String> {
    use sea_orm::{ConnectionTrait, Database, Statement};
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let db = Database::connect(url).await.expect("open the SQLite file");
        let rows = db
            .query_all_raw(Statement::from_string(
                db.get_database_backend(),
                "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name",
            ))
            .await
            .unwrap();
        let names = rows
            .iter()
            .map(|r| r.try_get::<String>("", "name").unwrap())
            .collect();
        db.close().await.ok();
        names
    })
}

#[test]
fn migrate_creates_the_schema_in_a_fresh_sqlite_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("migrated.db");
    let url = format!("sqlite://{}?mode=rwc", file.display());
    for _ in 0..2 {
        // The second run finds nothing pending and succeeds again.
        let out = run(keyward().env("DATABASE_URL", &url).arg("migrate"));
        assert_success(&out);
        assert!(
            stderr(&out).contains("migrations are up to date (sqlite)"),
            "{}",
            stderr(&out)
        );
    }
    assert!(file.exists());
    let tables = sqlite_tables(&url);
    for table in ["configs", "config_tags", "api_tokens", "audit_events"] {
        assert!(tables.iter().any(|t| t == table), "{table} in {tables:?}");
    }

    // With nothing set but the data directory, the default SQLite file is used.
    let data = dir.path().join("data");
    let out = run(keyward().env("KEYWARD_DATA_DIR", &data).arg("migrate"));
    assert_success(&out);
    assert!(data.join("keyward.db").exists());
}

/// A `keyward serve` child: killed (and reaped) on drop.
struct Server {
    child: Child,
    lines: mpsc::Receiver<String>,
    /// Standard error up to and including the "listening" line.
    startup: Vec<String>,
    port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Starts `keyward serve` with `env` on port 0 and waits for it to listen.
    fn start(env: &[(&str, &str)]) -> Self {
        let mut cmd = keyward();
        cmd.arg("serve")
            .env("KEYWARD_BIND", "127.0.0.1:0")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("keyward serve starts");
        let lines = forward_lines(child.stderr.take().unwrap());
        let mut server = Self {
            child,
            lines,
            startup: Vec::new(),
            port: 0,
        };
        let deadline = Instant::now() + STARTUP;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match server.lines.recv_timeout(left) {
                Ok(line) => {
                    let line = plain(&line);
                    let listening = line.contains("keyward is listening");
                    if listening {
                        server.port =
                            port_in(&line).unwrap_or_else(|| panic!("no port in: {line}"));
                    }
                    server.startup.push(line);
                    if listening {
                        return server;
                    }
                }
                Err(_) => {
                    let status = server.child.try_wait().ok().flatten();
                    panic!(
                        "keyward serve did not start ({status:?}):\n{}",
                        server.startup.join("\n")
                    );
                }
            }
        }
    }

    fn startup_text(&self) -> String {
        self.startup.join("\n")
    }

    fn stdout_so_far(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let mut out = String::new();
        if let Some(mut s) = self.child.stdout.take() {
            s.read_to_string(&mut out).ok();
        }
        out
    }

    fn gql(&self, token: &str, query: &str, variables: Value) -> (u16, Value) {
        let url = format!("http://127.0.0.1:{}/graphql", self.port);
        tokio::runtime::Runtime::new().unwrap().block_on(async {
            let res = reqwest::Client::builder()
                .no_proxy()
                .build()
                .unwrap()
                .post(url)
                .bearer_auth(token)
                .json(&json!({ "query": query, "variables": variables }))
                .send()
                .await
                .expect("the server answers");
            (
                res.status().as_u16(),
                res.json().await.unwrap_or(Value::Null),
            )
        })
    }
}

fn forward_lines(stream: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// The port of `address=127.0.0.1:PORT` (text) or `"address":"127.0.0.1:PORT"` (JSON).
fn port_in(line: &str) -> Option<u16> {
    let at = line.find("127.0.0.1:")? + "127.0.0.1:".len();
    let digits: String = line[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// The bootstrap token: a line that is a `kw_` token alone.
fn tokens_in(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| l.starts_with("kw_") && !l.contains(' '))
        .map(str::to_owned)
        .collect()
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 temp path")
}

#[test]
fn the_first_serve_makes_a_private_key_file_and_prints_one_admin_token() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("fresh");
    let key_file = data.join("encryption.key");
    let env = [("KEYWARD_DATA_DIR", path_str(&data))];

    let first = Server::start(&env);
    assert!(key_file.exists(), "the development key file is created");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the key file is private: {mode:o}");
    }
    let key = std::fs::read_to_string(&key_file).unwrap();
    Keyring::parse(&SecretString::from(key.trim().to_owned()))
        .expect("the key file holds a Fernet key");
    let text = first.startup_text();
    assert!(
        text.contains("DEVELOPMENT key file"),
        "a loud warning:\n{text}"
    );
    let tokens = tokens_in(&text);
    assert_eq!(
        tokens.len(),
        1,
        "exactly one bootstrap token on stderr:\n{text}"
    );
    let token = tokens[0].clone();

    let (status, me) = first.gql(&token, "{ me { name role } }", json!({}));
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["data"]["me"]["role"], "ADMIN", "{me}");
    let (_, created) = first.gql(
        &token,
        "mutation($i: CreateConfigInput!) { createConfig(input: $i) { id configData } }",
        json!({ "i": { "name": "first-run", "configData": { "api_key": "sk-test-first-run-secret" } } }),
    );
    let id = created["data"]["createConfig"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{created}"))
        .to_owned();
    assert!(
        created["data"]["createConfig"]["configData"]["api_key"]
            .as_str()
            .unwrap()
            .starts_with("enc:")
    );
    let out = first.stdout_so_far();
    assert!(
        !out.contains(&token),
        "the token is printed on stderr, not stdout"
    );

    // A second start: same key file, no new token, and the first token still works.
    let second = Server::start(&env);
    let text = second.startup_text();
    assert!(
        tokens_in(&text).is_empty(),
        "no second bootstrap token:\n{text}"
    );
    assert!(
        !text.contains(&token),
        "the first token is never printed again"
    );
    assert_eq!(
        std::fs::read_to_string(&key_file).unwrap(),
        key,
        "the key file is kept"
    );
    let (_, read) = second.gql(
        &token,
        "query($id: ID!) { config(id: $id, decrypt: true) { configData encrypted } }",
        json!({ "id": id }),
    );
    assert_eq!(
        read["data"]["config"]["configData"]["api_key"], "sk-test-first-run-secret",
        "{read}"
    );
    assert_eq!(read["data"]["config"]["encrypted"], false);
}

#[test]
fn serve_on_postgres_without_a_key_refuses_to_start_and_names_config_encryption_key() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = keyward()
        .arg("serve")
        .env("KEYWARD_BIND", "127.0.0.1:0")
        .env("KEYWARD_DATA_DIR", dir.path())
        .env(
            "DATABASE_URL",
            "postgres://postgres@127.0.0.1:5432/postgres",
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + STARTUP;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("keyward serve kept running without CONFIG_ENCRYPTION_KEY on PostgreSQL");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let err = plain(&err);
    assert!(!status.success(), "it must refuse to start: {err}");
    assert!(
        err.contains("CONFIG_ENCRYPTION_KEY"),
        "the message names the variable: {err}"
    );
    assert!(
        err.contains("keyward keygen"),
        "and says how to make a key: {err}"
    );
    assert!(!err.contains("keyward is listening"), "{err}");
    assert!(
        !dir.path().join("encryption.key").exists(),
        "no key nobody chose"
    );
}

#[test]
fn token_create_prints_a_member_token_that_authenticates_as_member() {
    let dir = tempfile::tempdir().unwrap();
    let data = path_str(dir.path());
    let out = run(keyward().env("KEYWARD_DATA_DIR", data).args([
        "token", "create", "--name", "n", "--role", "member", "--tenant", "t",
    ]));
    assert_success(&out);
    let printed = stdout(&out);
    let token = printed.trim().to_owned();
    assert_eq!(printed, format!("{token}\n"), "stdout is the token alone");
    assert!(token.starts_with("kw_") && token.len() > 40, "{token}");
    assert!(
        !stderr(&out).contains(&token),
        "the secret is printed once, on stdout"
    );

    let server = Server::start(&[
        ("KEYWARD_DATA_DIR", data),
        ("KEYWARD_ADMIN_TOKEN", "cli-test-admin-token"),
    ]);
    let (status, me) = server.gql(&token, "{ me { name role tenant } }", json!({}));
    assert_eq!(status, 200, "{me}");
    assert_eq!(
        me["data"]["me"],
        json!({ "name": "n", "role": "MEMBER", "tenant": "t" })
    );
    let (status, denied) = server.gql("kw_not-a-token", "{ me { name } }", json!({}));
    assert_eq!(status, 401, "an unknown token is refused: {denied}");
}

#[test]
fn schema_prints_the_sdl() {
    let out = run(keyward().arg("schema"));
    assert_success(&out);
    let sdl = stdout(&out);
    for needle in [
        "type Config",
        "type Query",
        "type Mutation",
        "createConfig(",
        "scalar JSON",
        "enum Role",
    ] {
        assert!(sdl.contains(needle), "`{needle}` in the SDL");
    }
}

/// `keyward rotate` after a new primary key, with tenant data keys switched on: every value
/// moves (under the tenant's data key), a second run finds nothing to do, and a server with
/// the old key removed reads everything.
#[test]
fn rotate_moves_every_value_and_then_the_old_key_can_go() {
    let dir = tempfile::tempdir().unwrap();
    let data = path_str(dir.path());
    let (old, new) = (a_key(), a_key());
    let admin = "cli-rotate-admin-token";
    let id = {
        let server = Server::start(&[
            ("KEYWARD_DATA_DIR", data),
            ("CONFIG_ENCRYPTION_KEY", old.expose_secret()),
            ("KEYWARD_ADMIN_TOKEN", admin),
        ]);
        let (status, created) = server.gql(
            admin,
            "mutation { createConfig(input: { name: \"r\", configData: { api_key: \"sk-cli-rotate\" } }) { id } }",
            json!({}),
        );
        assert_eq!(status, 200, "{created}");
        created["data"]["createConfig"]["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };

    let both = format!("{},{}", new.expose_secret(), old.expose_secret());
    let rotate = |keys: &str| {
        run(keyward()
            .arg("rotate")
            .env("KEYWARD_DATA_DIR", data)
            .env("CONFIG_ENCRYPTION_KEY", keys)
            .env("KEYWARD_TENANT_KEYS", "true"))
    };
    let first = rotate(&both);
    assert_success(&first);
    assert_eq!(
        stdout(&first),
        "reencrypted=1 alreadyCurrent=0 failed=0 rewrappedKeys=0\n"
    );
    assert!(
        stderr(&first).contains("1 configs: 1 re-encrypted"),
        "progress: {}",
        stderr(&first)
    );
    let again = rotate(new.expose_secret());
    assert_success(&again);
    assert_eq!(
        stdout(&again),
        "reencrypted=0 alreadyCurrent=1 failed=0 rewrappedKeys=0\n"
    );
    for secret in [old.expose_secret(), new.expose_secret(), "sk-cli-rotate"] {
        assert!(!stderr(&first).contains(secret) && !stderr(&again).contains(secret));
    }

    let server = Server::start(&[
        ("KEYWARD_DATA_DIR", data),
        ("CONFIG_ENCRYPTION_KEY", new.expose_secret()),
        ("KEYWARD_TENANT_KEYS", "true"),
        ("KEYWARD_ADMIN_TOKEN", admin),
    ]);
    let (status, read) = server.gql(
        admin,
        "query($id: ID!) { config(id: $id, decrypt: true) { configData } }",
        json!({ "id": id }),
    );
    assert_eq!(status, 200, "{read}");
    assert_eq!(
        read["data"]["config"]["configData"]["api_key"],
        "sk-cli-rotate"
    );
}
