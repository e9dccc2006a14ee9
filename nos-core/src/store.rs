//! The configuration store on sled: numbered commits, history, diff and rollback.
//!
//! Layout, all in one sled tree (`commits`):
//!
//! * `c` followed by the commit number (big-endian `u64`) → the commit's record;
//! * `head` → the number of the newest commit (big-endian `u64`).
//!
//! A commit writes its record and moves `head` in one sled transaction and flushes
//! before it returns, so after a crash the store holds every acknowledged commit
//! and nothing of a commit that did not finish.
//!
//! A record is a small header followed by the JSON of `{info, config}`:
//!
//! ```text
//! "NOSC" | payload length (u64 BE) | FNV-1a 64 of the payload (u64 BE) | payload
//! ```
//!
//! The length and checksum turn a torn or damaged record into
//! [`StoreError::Corrupt`] instead of a silently wrong configuration.

use crate::config::{Config, ConfigErrors};
use serde::{Deserialize, Serialize};
use sled::transaction::{ConflictableTransactionError, TransactionError};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What is known about a commit besides its configuration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitInfo {
    /// 1 for the first commit, then one more for each commit.
    pub number: u64,
    /// When it was committed, in milliseconds since the Unix epoch.
    pub unix_ms: u64,
    /// The same instant in RFC 3339, UTC, e.g. `2026-11-21T13:45:01.123Z`.
    pub timestamp: String,
    pub message: Option<String>,
}

/// A commit: its metadata and the configuration it holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Commit {
    pub info: CommitInfo,
    pub config: Config,
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The configuration failed validation; nothing was written.
    #[error("the configuration is invalid; nothing was committed:\n{0}")]
    Invalid(ConfigErrors),
    /// No commit has this number.
    #[error("commit {0} does not exist")]
    NotFound(u64),
    /// The database failed (I/O error, a damaged database file, ...).
    #[error("config store database error: {0}")]
    Db(#[from] sled::Error),
    /// A stored record cannot be used.
    #[error("commit {number} in the config store is corrupt: {reason}")]
    Corrupt { number: u64, reason: String },
}

/// A handle on the configuration store. Cloning it is cheap and every clone uses
/// the same database.
#[derive(Clone)]
pub struct ConfigStore {
    db: sled::Db,
    commits: sled::Tree,
    path: PathBuf,
}

impl fmt::Debug for ConfigStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConfigStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

const TREE: &[u8] = b"commits";
const HEAD_KEY: &[u8] = b"head";
const RECORD_PREFIX: u8 = b'c';
const MAGIC: &[u8; 4] = b"NOSC";
const HEADER_LEN: usize = 4 + 8 + 8;

fn record_key(number: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = RECORD_PREFIX;
    k[1..].copy_from_slice(&number.to_be_bytes());
    k
}

fn key_number(key: &[u8]) -> Option<u64> {
    match key {
        [RECORD_PREFIX, rest @ ..] => Some(u64::from_be_bytes(rest.try_into().ok()?)),
        _ => None,
    }
}

/// FNV-1a, 64-bit.
fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

#[derive(Serialize)]
struct RecordRef<'a> {
    info: &'a CommitInfo,
    config: &'a Config,
}

#[derive(Deserialize)]
struct Record {
    info: CommitInfo,
    config: Config,
}

/// A record read for its metadata only.
#[derive(Deserialize)]
struct RecordInfo {
    info: CommitInfo,
}

fn encode_record(info: &CommitInfo, config: &Config) -> Result<Vec<u8>, StoreError> {
    let payload =
        serde_json::to_vec(&RecordRef { info, config }).map_err(|e| StoreError::Corrupt {
            number: info.number,
            reason: format!("cannot encode the commit: {e}"),
        })?;
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(payload.len() as u64).to_be_bytes());
    out.extend_from_slice(&fnv1a64(&payload).to_be_bytes());
    out.extend_from_slice(&payload);
    Ok(out)
}

/// Checks a record's header and checksum and returns its payload.
fn record_payload(number: u64, bytes: &[u8]) -> Result<&[u8], StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt { number, reason };
    if bytes.len() < HEADER_LEN {
        return Err(corrupt(format!(
            "the record is truncated ({} bytes, shorter than its {HEADER_LEN}-byte header)",
            bytes.len()
        )));
    }
    let (header, payload) = bytes.split_at(HEADER_LEN);
    if &header[..4] != MAGIC {
        return Err(corrupt("the record has an unknown format".into()));
    }
    let mut word = [0u8; 8];
    word.copy_from_slice(&header[4..12]);
    let len = u64::from_be_bytes(word);
    word.copy_from_slice(&header[12..20]);
    let sum = u64::from_be_bytes(word);
    if payload.len() as u64 != len {
        return Err(corrupt(format!(
            "the record holds {} bytes of data but its header says {len}",
            payload.len()
        )));
    }
    let actual = fnv1a64(payload);
    if actual != sum {
        return Err(corrupt(format!(
            "checksum mismatch (stored {sum:016x}, computed {actual:016x})"
        )));
    }
    Ok(payload)
}

fn check_number(number: u64, info: &CommitInfo) -> Result<(), StoreError> {
    if info.number != number {
        return Err(StoreError::Corrupt {
            number,
            reason: format!("the record stored there is numbered {}", info.number),
        });
    }
    Ok(())
}

fn decode_record(number: u64, bytes: &[u8]) -> Result<Commit, StoreError> {
    let payload = record_payload(number, bytes)?;
    let r: Record = serde_json::from_slice(payload).map_err(|e| StoreError::Corrupt {
        number,
        reason: format!("the record cannot be decoded: {e}"),
    })?;
    check_number(number, &r.info)?;
    Ok(Commit {
        info: r.info,
        config: r.config,
    })
}

fn decode_info(number: u64, bytes: &[u8]) -> Result<CommitInfo, StoreError> {
    let payload = record_payload(number, bytes)?;
    let r: RecordInfo = serde_json::from_slice(payload).map_err(|e| StoreError::Corrupt {
        number,
        reason: format!("the record cannot be decoded: {e}"),
    })?;
    check_number(number, &r.info)?;
    Ok(r.info)
}

fn decode_head(bytes: &[u8]) -> Result<u64, StoreError> {
    let word: [u8; 8] = bytes.try_into().map_err(|_| StoreError::Corrupt {
        number: 0,
        reason: format!(
            "the head pointer is {} bytes long instead of 8",
            bytes.len()
        ),
    })?;
    Ok(u64::from_be_bytes(word))
}

/// The current time as Unix milliseconds and RFC 3339 UTC with milliseconds.
fn now() -> (u64, String) {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0);
    let at = UNIX_EPOCH + Duration::from_millis(ms);
    (ms, humantime::format_rfc3339_millis(at).to_string())
}

impl ConfigStore {
    /// Opens the store in directory `path`, creating it if needed, and checks that
    /// the newest commit is intact.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = sled::Config::new().path(path).open()?;
        let commits = db.open_tree(TREE)?;
        let store = ConfigStore {
            db,
            commits,
            path: path.to_path_buf(),
        };
        store.check_head()?;
        Ok(store)
    }

    /// The directory the store lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The head pointer and the newest record must agree.
    fn check_head(&self) -> Result<(), StoreError> {
        let head = self.head_number()?;
        let last = match self.commits.scan_prefix([RECORD_PREFIX]).next_back() {
            None => 0,
            Some(kv) => {
                let (k, _) = kv?;
                key_number(&k).ok_or_else(|| StoreError::Corrupt {
                    number: 0,
                    reason: format!("unexpected key {k:?} among the commits"),
                })?
            }
        };
        if last != head {
            return Err(StoreError::Corrupt {
                number: head.max(last),
                reason: format!(
                    "the newest record is commit {last} but the head pointer says {head}"
                ),
            });
        }
        if head > 0 {
            self.get(head)?;
        }
        Ok(())
    }

    fn head_number(&self) -> Result<u64, StoreError> {
        match self.commits.get(HEAD_KEY)? {
            None => Ok(0),
            Some(v) => decode_head(&v),
        }
    }

    /// Validates `config` and stores it as the next commit. Nothing is written when
    /// validation fails. The commit is on disk when this returns.
    pub fn commit(&self, config: &Config, message: Option<&str>) -> Result<CommitInfo, StoreError> {
        config.validate().map_err(StoreError::Invalid)?;
        let (unix_ms, timestamp) = now();
        let message = message.map(str::to_owned);
        let info = self
            .commits
            .transaction(|tx| {
                let head = match tx.get(HEAD_KEY)? {
                    None => 0,
                    Some(v) => decode_head(&v).map_err(ConflictableTransactionError::Abort)?,
                };
                let info = CommitInfo {
                    number: head + 1,
                    unix_ms,
                    timestamp: timestamp.clone(),
                    message: message.clone(),
                };
                let record =
                    encode_record(&info, config).map_err(ConflictableTransactionError::Abort)?;
                tx.insert(&record_key(info.number)[..], record)?;
                tx.insert(HEAD_KEY, &info.number.to_be_bytes()[..])?;
                Ok(info)
            })
            .map_err(|e| match e {
                TransactionError::Abort(e) => e,
                TransactionError::Storage(e) => StoreError::Db(e),
            })?;
        self.db.flush()?;
        Ok(info)
    }

    /// The newest commit, or `None` before the first.
    pub fn head(&self) -> Result<Option<Commit>, StoreError> {
        match self.head_number()? {
            0 => Ok(None),
            n => match self.get(n) {
                Err(StoreError::NotFound(_)) => Err(StoreError::Corrupt {
                    number: n,
                    reason: "the head pointer names it but its record is missing".into(),
                }),
                r => r.map(Some),
            },
        }
    }

    /// Commit `number`.
    pub fn get(&self, number: u64) -> Result<Commit, StoreError> {
        match self.commits.get(record_key(number))? {
            None => Err(StoreError::NotFound(number)),
            Some(bytes) => decode_record(number, &bytes),
        }
    }

    /// Every commit's metadata, oldest first.
    pub fn history(&self) -> Result<Vec<CommitInfo>, StoreError> {
        let mut out = Vec::new();
        for kv in self.commits.scan_prefix([RECORD_PREFIX]) {
            let (k, v) = kv?;
            let number = key_number(&k).ok_or_else(|| StoreError::Corrupt {
                number: 0,
                reason: format!("unexpected key {k:?} among the commits"),
            })?;
            let expected = out.len() as u64 + 1;
            if number != expected {
                return Err(StoreError::Corrupt {
                    number: expected,
                    reason: format!("the record is missing (the next one is commit {number})"),
                });
            }
            out.push(decode_info(number, &v)?);
        }
        Ok(out)
    }

    /// A unified line diff from commit `n`'s configuration to commit `m`'s, in their
    /// canonical YAML; empty when they are equal.
    pub fn diff(&self, n: u64, m: u64) -> Result<String, StoreError> {
        let old = self.get(n)?.config.to_yaml();
        let new = self.get(m)?.config.to_yaml();
        Ok(unified_diff(
            &old,
            &new,
            &format!("commit {n}"),
            &format!("commit {m}"),
        ))
    }

    /// Makes a new commit holding commit `n`'s configuration. The message defaults to
    /// `rollback to commit N`.
    pub fn rollback(&self, n: u64, message: Option<&str>) -> Result<CommitInfo, StoreError> {
        let old = self.get(n)?;
        let default = format!("rollback to commit {n}");
        self.commit(&old.config, Some(message.unwrap_or(&default)))
    }
}

/// A unified diff of two texts with three lines of context, or "" when they are equal.
fn unified_diff(old: &str, new: &str, old_name: &str, new_name: &str) -> String {
    if old == new {
        return String::new();
    }
    similar::TextDiff::from_lines(old, new)
        .unified_diff()
        .context_radius(3)
        .header(old_name, new_name)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{InterfaceConfig, PortConfig};
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A directory removed when dropped.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> Self {
            static N: AtomicU32 = AtomicU32::new(0);
            let p = std::env::temp_dir().join(format!(
                "nos-store-{tag}-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = std::fs::remove_dir_all(&p);
            TempDir(p)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn config(hostname: &str, ports: usize) -> Config {
        let mut c = Config::default();
        c.system.hostname = hostname.into();
        for i in 1..=ports {
            c.ports.push(PortConfig {
                name: format!("eth{i}"),
                linux: None,
                mtu: 1500,
                enabled: true,
                description: None,
            });
        }
        c
    }

    #[test]
    fn commit_history_get_head() {
        let dir = TempDir::new("basic");
        let store = ConfigStore::open(&dir.0).unwrap();
        assert_eq!(store.head().unwrap(), None);
        assert_eq!(store.history().unwrap(), vec![]);

        let a = config("a", 1);
        let b = config("b", 2);
        let i1 = store.commit(&a, Some("first")).unwrap();
        let i2 = store.commit(&b, None).unwrap();
        assert_eq!((i1.number, i2.number), (1, 2));
        assert_eq!(i1.message.as_deref(), Some("first"));
        assert_eq!(i2.message, None);
        assert!(i2.unix_ms >= i1.unix_ms);

        assert_eq!(store.history().unwrap(), vec![i1.clone(), i2.clone()]);
        assert_eq!(store.get(1).unwrap().config, a);
        assert_eq!(store.get(1).unwrap().info, i1);
        let head = store.head().unwrap().unwrap();
        assert_eq!(head.info, i2);
        assert_eq!(head.config, b);
    }

    #[test]
    fn numbers_start_at_one_and_increase_by_one() {
        let dir = TempDir::new("numbers");
        let store = ConfigStore::open(&dir.0).unwrap();
        for n in 1..=20u64 {
            let info = store.commit(&config(&format!("h{n}"), 1), None).unwrap();
            assert_eq!(info.number, n);
        }
        let numbers: Vec<u64> = store.history().unwrap().iter().map(|i| i.number).collect();
        assert_eq!(numbers, (1..=20).collect::<Vec<_>>());
    }

    #[test]
    fn timestamp_is_rfc3339_utc_millis() {
        let dir = TempDir::new("time");
        let store = ConfigStore::open(&dir.0).unwrap();
        let info = store.commit(&config("t", 0), None).unwrap();
        let ts = &info.timestamp;
        // 2026-11-21T13:45:01.123Z
        assert_eq!(ts.len(), 24, "{ts}");
        assert!(ts.ends_with('Z') && ts.as_bytes()[10] == b'T', "{ts}");
        let parsed = humantime::parse_rfc3339(ts).unwrap();
        let ms = parsed.duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
        assert_eq!(ms, info.unix_ms);
    }

    #[test]
    fn invalid_config_writes_nothing() {
        let dir = TempDir::new("invalid");
        let store = ConfigStore::open(&dir.0).unwrap();
        store.commit(&config("good", 1), None).unwrap();
        let before = store.history().unwrap();

        let mut bad = config("bad", 1);
        bad.ports[0].mtu = 20;
        bad.interfaces.push(InterfaceConfig {
            name: "x".into(),
            port: Some("nope".into()),
            vlan: None,
            vrf: None,
            mac: None,
            mtu: None,
            enabled: true,
            description: None,
            ipv4: vec![],
            ipv6: vec![],
        });
        let err = store.commit(&bad, Some("should fail")).unwrap_err();
        let StoreError::Invalid(errors) = &err else {
            panic!("expected Invalid, got {err:?}");
        };
        assert_eq!(errors.0.len(), 2, "{errors}");
        assert!(err.to_string().contains("ports[0].mtu"), "{err}");
        assert_eq!(store.history().unwrap(), before);
        assert_eq!(
            store.head().unwrap().unwrap().config.system.hostname,
            "good"
        );
    }

    #[test]
    fn get_missing_commit() {
        let dir = TempDir::new("missing");
        let store = ConfigStore::open(&dir.0).unwrap();
        store.commit(&config("a", 0), None).unwrap();
        let err = store.get(7).unwrap_err();
        assert!(matches!(err, StoreError::NotFound(7)));
        assert_eq!(err.to_string(), "commit 7 does not exist");
        assert!(matches!(store.diff(1, 7), Err(StoreError::NotFound(7))));
        assert!(matches!(
            store.rollback(0, None),
            Err(StoreError::NotFound(0))
        ));
    }

    #[test]
    fn diff_output() {
        let dir = TempDir::new("diff");
        let store = ConfigStore::open(&dir.0).unwrap();
        let a = config("alpha", 2);
        let mut b = a.clone();
        b.system.hostname = "beta".into();
        b.ports[1].mtu = 9000;
        store.commit(&a, None).unwrap();
        store.commit(&b, None).unwrap();
        store.commit(&a, None).unwrap();

        let d = store.diff(1, 2).unwrap();
        let expected = "\
--- commit 1
+++ commit 2
@@ -1,5 +1,5 @@
 system:
-  hostname: alpha
+  hostname: beta
 dataplane:
   backend: x86
 ports:
@@ -7,5 +7,5 @@
   mtu: 1500
   enabled: true
 - name: eth2
-  mtu: 1500
+  mtu: 9000
   enabled: true
";
        assert_eq!(d, expected);
        assert_eq!(store.diff(1, 3).unwrap(), "");
        assert_eq!(store.diff(2, 2).unwrap(), "");
        assert!(store
            .diff(2, 1)
            .unwrap()
            .starts_with("--- commit 2\n+++ commit 1\n"));
    }

    #[test]
    fn rollback_makes_a_new_commit() {
        let dir = TempDir::new("rollback");
        let store = ConfigStore::open(&dir.0).unwrap();
        let a = config("a", 1);
        let b = config("b", 3);
        store.commit(&a, None).unwrap();
        store.commit(&b, None).unwrap();

        let info = store.rollback(1, None).unwrap();
        assert_eq!(info.number, 3);
        assert_eq!(info.message.as_deref(), Some("rollback to commit 1"));
        let head = store.head().unwrap().unwrap();
        assert_eq!(head.info, info);
        assert_eq!(head.config, a);
        assert_eq!(store.get(2).unwrap().config, b);

        let info = store.rollback(2, Some("undo the undo")).unwrap();
        assert_eq!(info.number, 4);
        assert_eq!(info.message.as_deref(), Some("undo the undo"));
        assert_eq!(store.get(4).unwrap().config, b);
        assert_eq!(store.history().unwrap().len(), 4);
    }

    #[test]
    fn reopen_keeps_everything() {
        let dir = TempDir::new("reopen");
        let (history, configs) = {
            let store = ConfigStore::open(&dir.0).unwrap();
            let configs: Vec<Config> = (1..=5).map(|n| config(&format!("r{n}"), n)).collect();
            for c in &configs {
                store.commit(c, Some("x")).unwrap();
            }
            (store.history().unwrap(), configs)
        };
        let store = ConfigStore::open(&dir.0).unwrap();
        assert_eq!(store.history().unwrap(), history);
        for (i, c) in configs.iter().enumerate() {
            assert_eq!(&store.get(i as u64 + 1).unwrap().config, c);
        }
        let info = store.commit(&config("after", 0), None).unwrap();
        assert_eq!(info.number, 6);
    }

    #[test]
    fn concurrent_commits_get_distinct_contiguous_numbers() {
        let dir = TempDir::new("concurrent");
        let store = ConfigStore::open(&dir.0).unwrap();
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let store = store.clone();
                std::thread::spawn(move || {
                    (0..10)
                        .map(|i| {
                            store
                                .commit(&config(&format!("t{t}-{i}"), t), None)
                                .unwrap()
                                .number
                        })
                        .collect::<Vec<u64>>()
                })
            })
            .collect();
        let mut numbers: Vec<u64> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        numbers.sort();
        assert_eq!(numbers, (1..=40).collect::<Vec<_>>());
        let history = store.history().unwrap();
        assert_eq!(history.len(), 40);
        for info in history {
            let c = store.get(info.number).unwrap();
            assert!(c.config.system.hostname.starts_with('t'));
        }
    }

    #[test]
    fn damaged_record_is_corrupt_not_used() {
        let dir = TempDir::new("corrupt");
        let store = ConfigStore::open(&dir.0).unwrap();
        store.commit(&config("a", 1), None).unwrap();
        store.commit(&config("b", 1), None).unwrap();

        // Flip one payload byte of commit 1.
        let mut rec = store.commits.get(record_key(1)).unwrap().unwrap().to_vec();
        let last = rec.len() - 2;
        rec[last] ^= 0x01;
        store.commits.insert(record_key(1), rec.clone()).unwrap();
        let err = store.get(1).unwrap_err();
        assert!(
            matches!(&err, StoreError::Corrupt { number: 1, reason } if reason.contains("checksum")),
            "{err}"
        );
        assert!(matches!(
            store.history(),
            Err(StoreError::Corrupt { number: 1, .. })
        ));

        // A torn record: the tail is missing.
        rec.truncate(rec.len() / 2);
        store.commits.insert(record_key(1), rec).unwrap();
        let err = store.get(1).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("commit 1 in the config store is corrupt"),
            "{err}"
        );

        // The head record is checked on open.
        store.commits.insert(record_key(2), &b"NOSC"[..]).unwrap();
        store.db.flush().unwrap();
        drop(store);
        assert!(matches!(
            ConfigStore::open(&dir.0),
            Err(StoreError::Corrupt { number: 2, .. })
        ));
    }
}
