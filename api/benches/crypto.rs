//! The encryption walk on a realistic 1 KB configData (one provider `api_key` and ten
//! other fields, as `make bench` seeds): one field and one whole document, both ways.
//!
//! `cargo bench -p keyward --bench crypto`. Issue 9's target: per-field encrypt ≤ 2 µs.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use keyward::crypto::{
    Keyring, SealedBoxKeys, decrypt_document, decrypt_value, encrypt_value, seal_document,
    sensitive_paths,
};
use serde_json::{Value, json};

const API_KEY: &str = "sk-bench-0123456789abcdef0123456789abcdef0123456789abcdef01234567";

/// The document `make bench` stores, padded to 1,024 bytes of compact JSON.
fn document() -> Value {
    let mut doc = json!({
        "providers": [{
            "module": "provider-openai",
            "config": {
                "api_key": API_KEY,
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
    let size = serde_json::to_string(&doc).map_or(0, |s| s.len());
    let pad = 1024usize.saturating_sub(size);
    let filler = "Rotated quarterly by the platform team; see the access policy. ";
    doc["notes"] = json!(filler.repeat(pad / filler.len() + 1)[..pad].to_owned());
    doc
}

fn keys() -> (Keyring, SealedBoxKeys) {
    let keyring = Keyring::parse(&Keyring::generate_key()).expect("a fresh key parses");
    let sealed = SealedBoxKeys::derive(&keyring);
    (keyring, sealed)
}

fn per_field(c: &mut Criterion) {
    let (keyring, _) = keys();
    let stored = encrypt_value(&keyring, API_KEY);
    let mut group = c.benchmark_group("field");
    group.throughput(Throughput::Elements(1));
    group.bench_function("encrypt_value", |b| {
        b.iter(|| encrypt_value(&keyring, black_box(API_KEY)))
    });
    group.bench_function("decrypt_value", |b| {
        b.iter(|| decrypt_value(&keyring, black_box(&stored)).expect("decrypts"))
    });
    group.finish();
}

fn per_document(c: &mut Criterion) {
    let (keyring, sealed_keys) = keys();
    let plain = document();
    let sealed = seal_document(plain.clone(), &keyring, &sealed_keys).expect("seals");
    assert_eq!(sealed.paths, ["providers[0].config.api_key"]);
    let stored = sealed.doc;
    let bytes = serde_json::to_vec(&plain).expect("serialises").len() as u64;
    let mut group = c.benchmark_group("document_1kb");
    group.throughput(Throughput::Bytes(bytes));
    group.bench_function("seal_document", |b| {
        b.iter_batched(
            || plain.clone(),
            |doc| seal_document(doc, &keyring, &sealed_keys).expect("seals"),
            criterion::BatchSize::SmallInput,
        )
    });
    // An already-sealed document (app-side encryption, or a re-save): each enc: value is
    // checked by decrypting it.
    group.bench_function("seal_document_already_sealed", |b| {
        b.iter_batched(
            || stored.clone(),
            |doc| seal_document(doc, &keyring, &sealed_keys).expect("seals"),
            criterion::BatchSize::SmallInput,
        )
    });
    group.bench_function("decrypt_document", |b| {
        b.iter(|| decrypt_document(black_box(&stored), &keyring).expect("decrypts"))
    });
    group.bench_function("sensitive_paths", |b| {
        b.iter(|| sensitive_paths(black_box(&stored)))
    });
    group.bench_function("clone_value", |b| b.iter(|| black_box(&plain).clone()));
    group.bench_function("serialize_compact", |b| {
        b.iter(|| serde_json::to_vec(black_box(&stored)).expect("serialises"))
    });
    group.finish();
}

criterion_group!(benches, per_field, per_document);
criterion_main!(benches);
