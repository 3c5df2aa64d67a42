//! The binary as an operator meets it: version, completions, structured logs.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_keyward");

#[test]
fn version_names_the_release_and_the_commit() {
    let out = Command::new(BIN).arg("--version").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.starts_with(&format!("keyward {} (commit ", env!("CARGO_PKG_VERSION"))),
        "{text}"
    );
}

#[test]
fn completions_are_printed_for_common_shells() {
    for shell in ["bash", "zsh", "fish"] {
        let out = Command::new(BIN)
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(out.status.success(), "{shell}");
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(
            text.contains("keyward") && text.contains("serve"),
            "{shell}: {text:.200}"
        );
    }
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn json_logs_carry_the_request_id_on_every_line_of_a_request() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .args(["serve", "--log-format", "json"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("KEYWARD_DATA_DIR", dir.path())
        .env("KEYWARD_BIND", "127.0.0.1:0")
        .env("KEYWARD_ADMIN_TOKEN", "ops-test-admin-token")
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let server = Server(child);
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut lines = Vec::new();
    let address = loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("the server starts");
        let json: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|_| panic!("not JSON: {line}"));
        lines.push(json.clone());
        if json["message"] == "keyward is listening" {
            break json["address"].as_str().unwrap().to_owned();
        }
    };

    let res = reqwest::blocking::Client::new()
        .post(format!("http://{address}/graphql"))
        .bearer_auth("ops-test-admin-token")
        .json(&serde_json::json!({ "query": "{ me { name } }" }))
        .send()
        .unwrap();
    let request_id = res.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert!(res.status().is_success());

    // The request's own lines: at least the access line, each with the id in its span.
    let mut mine = Vec::new();
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(5)) {
        let json: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|_| panic!("not JSON: {line}"));
        if json["span"]["id"] == request_id.as_str() {
            mine.push(json.clone());
        }
        lines.push(json);
        if mine.iter().any(|l| l["message"] == "served") {
            break;
        }
    }
    assert!(
        mine.iter()
            .any(|l| l["message"] == "served" && l["status"] == 200),
        "{lines:#?}"
    );
    for line in &lines {
        assert!(
            line.get("level").is_some() && line.get("timestamp").is_some(),
            "{line}"
        );
    }
    drop(server);
}
