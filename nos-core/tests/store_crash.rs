//! Crash safety of the config store: a child process commits configurations in a
//! loop and is killed with SIGKILL at a random moment; the store must then reopen
//! with every acknowledged commit intact and no partial one.
//!
//! The test binary re-executes itself to run the child: `child_committer` does
//! nothing unless `NOS_STORE_CRASH_DIR` is set.

use nos_core::config::{Config, PortConfig};
use nos_core::store::ConfigStore;
use rand::Rng;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const DIR_ENV: &str = "NOS_STORE_CRASH_DIR";
const ROUNDS: usize = 15;

/// The configuration the child commits as commit `n`: each one distinguishable by
/// its hostname, and of varying size.
fn config_for(n: u64) -> Config {
    let mut c = Config::default();
    c.system.hostname = format!("h-{n}");
    for i in 0..(n % 17) {
        c.ports.push(PortConfig {
            name: format!("eth{i}"),
            linux: None,
            mtu: 1500 + (n % 100) as u32,
            enabled: i % 2 == 0,
            description: Some(format!("port {i} of commit {n}")),
        });
    }
    c
}

/// The child: commit forever, acknowledging each commit once `commit` has returned.
#[test]
fn child_committer() {
    let Some(dir) = std::env::var_os(DIR_ENV) else {
        return;
    };
    let store = ConfigStore::open(Path::new(&dir)).expect("child: open the store");
    let mut next = store
        .head()
        .expect("child: read head")
        .map_or(1, |c| c.info.number + 1);
    let stdout = std::io::stdout();
    loop {
        let config = config_for(next);
        let info = store
            .commit(&config, Some(&format!("crash test {next}")))
            .expect("child: commit");
        assert_eq!(info.number, next, "child: unexpected commit number");
        let mut out = stdout.lock();
        writeln!(out, "ACK {} {}", info.number, config.system.hostname).expect("child: write");
        out.flush().expect("child: flush");
        next += 1;
    }
}

/// The store's directory, unique to this run and removed however the test ends.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("nos-store-crash-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct Round {
    acked: Vec<(u64, String)>,
}

/// Runs the child, kills it after `delay`, and returns what it acknowledged.
fn run_child(dir: &Path, delay: Duration) -> Round {
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args([
            "--exact",
            "child_committer",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(DIR_ENV, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut acked = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            // libtest prints "test child_committer ... " without a newline before
            // the test runs, so the first acknowledgement shares its line.
            let mut words = line.split_whitespace().skip_while(|w| *w != "ACK");
            if words.next().is_none() {
                continue;
            }
            let n: u64 = words.next().unwrap().parse().unwrap();
            let host = words.next().unwrap().to_string();
            acked.push((n, host));
        }
        acked
    });
    std::thread::sleep(delay);
    // On Unix, Child::kill sends SIGKILL: the child gets no chance to clean up.
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "the child ended other than by our SIGKILL: {status:?}"
    );
    Round {
        acked: reader.join().unwrap(),
    }
}

#[test]
fn store_survives_sigkill_during_commits() {
    if std::env::var_os(DIR_ENV).is_some() {
        return; // we are the child
    }
    let guard = TempDir::new();
    let dir = guard.0.clone();
    let started = Instant::now();
    let mut rng = rand::thread_rng();
    // Everything known to be committed: the last acknowledged number, or a head
    // observed after an earlier crash.
    let mut known: u64 = 0;
    let mut total_acked = 0usize;
    for round in 0..ROUNDS {
        let delay = Duration::from_millis(rng.gen_range(5..=150));
        let r = run_child(&dir, delay);
        total_acked += r.acked.len();

        let store = ConfigStore::open(&dir)
            .unwrap_or_else(|e| panic!("round {round}: the store does not reopen: {e}"));
        let history = store.history().unwrap();
        let head = history.last().map_or(0, |i| i.number);
        let numbers: Vec<u64> = history.iter().map(|i| i.number).collect();
        assert_eq!(
            numbers,
            (1..=head).collect::<Vec<_>>(),
            "round {round}: numbers are not contiguous"
        );

        // Every acknowledged commit is there with exactly its configuration.
        for (n, host) in &r.acked {
            let c = store
                .get(*n)
                .unwrap_or_else(|e| panic!("round {round}: acknowledged commit {n} is lost: {e}"));
            assert_eq!(&c.config.system.hostname, host);
            assert_eq!(
                c.config,
                config_for(*n),
                "round {round}: commit {n} differs"
            );
        }
        if let Some((last, _)) = r.acked.last() {
            assert!(
                *last > known,
                "round {round}: acknowledged numbers went back"
            );
            known = *last;
        }
        // At most one commit may have completed without being acknowledged.
        assert!(
            head == known || head == known + 1,
            "round {round}: head is {head}, the last known commit is {known}"
        );
        // ... and it, like every other commit, is complete and valid.
        for n in 1..=head {
            let c = store.get(n).unwrap();
            assert_eq!(c.config, config_for(n), "round {round}: commit {n} differs");
            c.config.validate().unwrap();
        }
        if head > 0 {
            assert_eq!(store.head().unwrap().unwrap().config, config_for(head));
        }
        known = head;
        drop(store);
    }
    assert!(
        total_acked > 0,
        "no commit was acknowledged in {ROUNDS} rounds"
    );
    eprintln!(
        "{ROUNDS} rounds, {total_acked} acknowledged commits, {known} in the store, {:?}",
        started.elapsed()
    );
}
