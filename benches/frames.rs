//! Wire frames: parsing what clients send and encoding what the server
//! sends, per frame.
//!
//! Run: `cargo bench --bench frames`
//!
//! Simulates the per-frame work of a socket task outside any I/O:
//! - `frames/parse/*`: `frame::parse` of a `join` and of a `publish` whose
//!   `data` is a small chat line or a 4 KiB dashboard object (the parser
//!   validates `data` and keeps it as raw text; throughput in bytes).
//! - `frames/encode/*`: building a `message` frame with `FrameBuf`, as the
//!   hub does once per publish (small and 4 KiB `data`), and an `error`
//!   frame, the reply to a refused request.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use wsgate::gateway::frame::{self, FrameBuf};

/// `data` limit of PROTOCOL.md (60 KiB).
const MAX_DATA: usize = 60 * 1024;
/// Size of the large `data` value.
const LARGE: usize = 4 * 1024;

/// A dashboard-like object of about `size` bytes of JSON.
fn large_data(size: usize) -> String {
    let mut s = String::from(r#"{"host":"web-7","series":["#);
    let mut i = 0u32;
    while s.len() < size - 40 {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&format!(
            r#"{{"t":{},"v":{}.{:02}}}"#,
            1_767_225_600_000u64 + u64::from(i) * 1000,
            i % 97,
            i % 100
        ));
        i += 1;
    }
    s.push_str(r#"],"ok":true}"#);
    s
}

fn parse(c: &mut Criterion) {
    let small = r#"{"text":"hello, everyone: the build is green again"}"#;
    let large = large_data(LARGE);
    let cases = [
        (
            "join",
            r#"{"type":"join","room":"lobby","ref":1}"#.to_owned(),
        ),
        (
            "publish_small",
            format!(r#"{{"type":"publish","room":"lobby","data":{small},"ref":2}}"#),
        ),
        (
            "publish_4k",
            format!(r#"{{"type":"publish","room":"feed:metrics","data":{large},"ref":3}}"#),
        ),
    ];
    let mut g = c.benchmark_group("frames/parse");
    for (name, text) in &cases {
        assert!(frame::parse(text, MAX_DATA).is_ok(), "{name} must parse");
        g.throughput(Throughput::Bytes(text.len() as u64));
        g.bench_function(*name, |b| {
            b.iter(|| frame::parse(black_box(text), MAX_DATA).is_ok())
        });
    }
    g.finish();
}

fn encode(c: &mut Criterion) {
    let small = r#"{"text":"hello, everyone: the build is green again"}"#;
    let large = large_data(LARGE);
    let mut g = c.benchmark_group("frames/encode");
    for (name, data) in [("message_small", small), ("message_4k", large.as_str())] {
        g.throughput(Throughput::Bytes(data.len() as u64));
        g.bench_function(name, |b| {
            b.iter(|| {
                FrameBuf::new("message")
                    .str("room", black_box("lobby"))
                    .opt_str("from", Some("alice"))
                    .raw("data", black_box(data))
                    .int("seq", 41_234u64)
                    .str("epoch", "9aff7b2281ab72ee")
                    .int("ts", 1_767_225_600_000u64)
                    .finish()
            })
        });
    }
    g.throughput(Throughput::Elements(1));
    g.bench_function("error", |b| {
        b.iter(|| {
            frame::error(
                black_box(Some("7")),
                "not_joined",
                "join the room before publishing to it",
            )
        })
    });
    g.finish();
}

criterion_group!(benches, parse, encode);
criterion_main!(benches);
