//! Commit latency of the sled config store.
//!
//! Commits the example configuration (`examples/router.yaml`) 1,000 times, each time
//! changing one leaf (a port description), and prints the latency distribution of
//! `ConfigStore::commit` (validation, encoding, the sled transaction and the flush).
//!
//! Run with `cargo bench -p nos-core --bench commit`.

use nos_core::config::Config;
use nos_core::store::ConfigStore;
use std::time::{Duration, Instant};

const EXAMPLE: &str = include_str!("../../examples/router.yaml");
const COMMITS: usize = 1_000;

fn main() {
    let base = match Config::from_yaml(EXAMPLE) {
        Ok(c) => c,
        Err(e) => panic!("examples/router.yaml is invalid:\n{e}"),
    };
    let dir = std::env::temp_dir().join(format!("nos-bench-commit-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = ConfigStore::open(&dir).expect("open the store");

    let mut latencies: Vec<Duration> = Vec::with_capacity(COMMITS);
    let started = Instant::now();
    for i in 0..COMMITS {
        let mut config = base.clone();
        config.ports[0].description = Some(format!("uplink, revision {i}"));
        let t = Instant::now();
        store
            .commit(&config, Some("bench"))
            .expect("commit the example");
        latencies.push(t.elapsed());
    }
    let wall = started.elapsed();
    assert_eq!(store.history().expect("history").len(), COMMITS);

    latencies.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let pct = |p: f64| latencies[((latencies.len() as f64 - 1.0) * p).round() as usize];
    let record = base.to_yaml().len();
    println!("config store commit latency ({COMMITS} commits of the example config, ~{record} bytes of YAML)");
    println!("  p50  {:>9.0} us", us(pct(0.50)));
    println!("  p99  {:>9.0} us", us(pct(0.99)));
    println!("  max  {:>9.0} us", us(latencies[latencies.len() - 1]));
    println!(
        "  rate {:>9.0} commits/s ({:.2} s in all)",
        COMMITS as f64 / wall.as_secs_f64(),
        wall.as_secs_f64()
    );

    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}
