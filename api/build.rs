//! Embeds the console: copies Trunk's `console/dist` into OUT_DIR (or a placeholder page
//! when it was not built), and records the git commit for `keyward --version`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::{env, fs};

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let dist = manifest.join("../console/dist");
    // Watching a directory that exists keeps cargo from rebuilding on every run.
    fs::create_dir_all(&dist).expect("create console/dist");
    println!("cargo:rerun-if-changed={}", dist.display());

    let out = PathBuf::from(env::var("OUT_DIR").unwrap()).join("console");
    let _ = fs::remove_dir_all(&out);
    fs::create_dir_all(&out).expect("create OUT_DIR/console");
    if dist.join("index.html").is_file() {
        copy_dir(&dist, &out);
    } else {
        fs::write(out.join("index.html"), PLACEHOLDER).unwrap();
        fs::write(out.join("keyward-placeholder"), "").unwrap();
        println!(
            "cargo:warning=console/dist is empty: embedding a placeholder (run `make console` or `make run`)"
        );
    }

    let commit = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=KEYWARD_GIT_COMMIT={commit}");
    let git_head = manifest.join("../.git/HEAD");
    if git_head.exists() {
        println!("cargo:rerun-if-changed={}", git_head.display());
        println!(
            "cargo:rerun-if-changed={}",
            manifest.join("../.git/refs/heads").display()
        );
    }
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            fs::create_dir_all(&target).unwrap();
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), target).unwrap();
        }
    }
}

const PLACEHOLDER: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Keyward console</title></head>
<body><h1>Keyward</h1><p>The console was not built into this binary. Build it with
<code>make console</code> (or start with <code>make run</code>), then rebuild the server.
GraphiQL is at <a href="/graphql">/graphql</a>.</p></body></html>
"#;
