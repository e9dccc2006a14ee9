//! Ordered, batched writes.
//!
//! A target may apply the updates of one Write in any order (the
//! specification leaves it open), so updates that depend on each other go
//! in successive Writes. Each update has a level ([`Schema::level`]:
//! interfaces and ACLs 0, neighbors, next hops and ingress entries 1,
//! groups 2, routes 3). Updates are taken in the order given and gathered
//! into *phases*; an update starts a new phase when it conflicts with one
//! already in the current phase:
//!
//! * an insert or modify at level L after anything below L (it may refer
//!   to it: members before groups before routes);
//! * a delete at level L after anything above L (what referred to it must
//!   be gone first: routes before groups before members), and anything
//!   after a delete above its level;
//! * any update of an entry already in the phase.
//!
//! A phase is cut into Writes of at most `max_batch` updates, sent with up
//! to `max_in_flight` in flight; phases run one after the other.
//!
//! [`Schema::level`]: crate::p4info::Schema::level

use crate::client::{Client, ClientError, UpdateError, WriteError};
use crate::compile::Planned;
use p4runtime_proto::p4::v1 as p4;
use std::collections::HashSet;
use tonic::Code;

/// How writes are cut and sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriteOptions {
    pub max_batch: usize,
    pub max_in_flight: usize,
    /// Retry an INSERT refused with ALREADY_EXISTS as a MODIFY, and a
    /// MODIFY refused with NOT_FOUND as an INSERT; take a DELETE refused
    /// with NOT_FOUND as done. For a controller whose idea of the target
    /// may be out of date (after a partial failure).
    pub idempotent: bool,
}

impl Default for WriteOptions {
    fn default() -> Self {
        Self {
            max_batch: 10_000,
            max_in_flight: 2,
            idempotent: true,
        }
    }
}

/// The phase being gathered (see the module docs), update by update.
#[derive(Debug)]
pub struct PhaseTracker {
    keys: HashSet<u64>,
    min_level: u8,
    max_level: u8,
    max_delete_level: Option<u8>,
}

impl Default for PhaseTracker {
    fn default() -> Self {
        Self {
            keys: HashSet::new(),
            min_level: u8::MAX,
            max_level: 0,
            max_delete_level: None,
        }
    }
}

impl PhaseTracker {
    /// Takes `u` into the current phase; true when it had to start a new
    /// one (it conflicts with an update of the phase before).
    pub fn push(&mut self, u: &Planned) -> bool {
        let is_delete = u.update.r#type == p4::update::Type::Delete as i32;
        let l = u.level;
        let conflict = !self.keys.is_empty()
            && (self.keys.contains(&u.key)
                || (!is_delete && self.min_level < l)
                || (is_delete && self.max_level > l)
                || self.max_delete_level.is_some_and(|d| d > l));
        if conflict {
            *self = Self::default();
        }
        self.keys.insert(u.key);
        self.min_level = self.min_level.min(l);
        self.max_level = self.max_level.max(l);
        if is_delete {
            self.max_delete_level = Some(self.max_delete_level.map_or(l, |d| d.max(l)));
        }
        conflict
    }
}

/// The phase boundaries of `updates`: `phases[i]..phases[i+1]`.
pub fn phases(updates: &[Planned]) -> Vec<usize> {
    let mut cuts = vec![0];
    let mut t = PhaseTracker::default();
    for (i, u) in updates.iter().enumerate() {
        if t.push(u) {
            cuts.push(i);
        }
    }
    cuts.push(updates.len());
    cuts.dedup();
    cuts
}

fn retry_type(ty: i32, code: Code) -> Option<Option<p4::update::Type>> {
    use p4::update::Type;
    match (Type::try_from(ty), code) {
        (Ok(Type::Insert), Code::AlreadyExists) => Some(Some(Type::Modify)),
        (Ok(Type::Modify), Code::NotFound) => Some(Some(Type::Insert)),
        (Ok(Type::Delete), Code::NotFound) => Some(None),
        _ => None,
    }
}

/// What [`write_ordered`] did.
#[derive(Clone, Debug, Default)]
pub struct WriteReport {
    /// One result per update, in the order given.
    pub results: Vec<Result<(), UpdateError>>,
    /// The updates that failed, with their index (when the options keep
    /// copies: `idempotent`).
    pub failed: Vec<(usize, p4::Update)>,
    /// Write RPCs sent.
    pub rpcs: usize,
}

impl WriteReport {
    pub fn failures(&self) -> usize {
        self.results.iter().filter(|r| r.is_err()).count()
    }
}

/// Sends `chunks` (each: its first index in `results` and its updates)
/// with up to `in_flight` Writes at a time, filling in one result per
/// update. Returns the error that lost the connection, if one did.
async fn send_chunks(
    client: &Client,
    chunks: Vec<(usize, Vec<p4::Update>)>,
    in_flight: usize,
    results: &mut [Result<(), UpdateError>],
    rpcs: &mut usize,
) -> Option<ClientError> {
    let mut set = tokio::task::JoinSet::new();
    let mut pending = chunks.into_iter();
    let mut lost = None;
    loop {
        while set.len() < in_flight.max(1) {
            let Some((start, updates)) = pending.next() else {
                break;
            };
            let c = client.clone();
            let n = updates.len();
            *rpcs += 1;
            set.spawn(async move { (start, n, c.write(updates).await) });
        }
        let Some(done) = set.join_next().await else {
            break;
        };
        let (start, n, r) = match done {
            Ok(x) => x,
            Err(e) => {
                tracing::error!("a write task failed: {e}");
                continue;
            }
        };
        match r {
            Ok(()) => {}
            Err(WriteError::Updates(each)) => {
                for (i, e) in each.into_iter().enumerate() {
                    results[start + i] = e;
                }
            }
            Err(WriteError::Request(e)) => {
                let ue = UpdateError {
                    code: e.code(),
                    message: e.to_string(),
                };
                for r in &mut results[start..start + n] {
                    *r = Err(ue.clone());
                }
                if e.is_disconnect() || matches!(e, ClientError::NotPrimary(_)) {
                    lost = Some(e);
                }
            }
        }
    }
    lost
}

/// Writes `updates` in dependency order (see the module docs) and returns
/// one result per update. If the connection is lost, the updates not yet
/// sent fail with its error.
pub async fn write_ordered(
    client: &Client,
    updates: Vec<Planned>,
    opts: WriteOptions,
) -> WriteReport {
    let cuts = phases(&updates);
    let mut results: Vec<Result<(), UpdateError>> = vec![Ok(()); updates.len()];
    let mut rpcs = 0;
    let mut failed = Vec::new();
    let mut rest = updates.into_iter();
    let max = opts.max_batch.max(1);
    for w in cuts.windows(2) {
        let (start, end) = (w[0], w[1]);
        let phase: Vec<p4::Update> = rest.by_ref().take(end - start).map(|p| p.update).collect();
        let kept = opts.idempotent.then(|| phase.clone());
        let mut chunks = Vec::new();
        let mut it = phase.into_iter();
        let mut at = start;
        loop {
            let c: Vec<p4::Update> = it.by_ref().take(max).collect();
            if c.is_empty() {
                break;
            }
            let n = c.len();
            chunks.push((at, c));
            at += n;
        }
        let lost = send_chunks(client, chunks, opts.max_in_flight, &mut results, &mut rpcs).await;
        if let Some(e) = lost {
            let ue = UpdateError {
                code: e.code(),
                message: format!("not sent: {e}"),
            };
            for r in &mut results[end..] {
                *r = Err(ue.clone());
            }
            if let Some(kept) = kept {
                failed.extend(
                    kept.into_iter()
                        .enumerate()
                        .filter(|(i, _)| results[start + i].is_err())
                        .map(|(i, u)| (start + i, u)),
                );
            }
            return WriteReport {
                results,
                failed,
                rpcs,
            };
        }
        let Some(kept) = kept else { continue };
        // Retry what an out-of-date view got wrong.
        let mut retry = Vec::new();
        for (i, u) in kept.into_iter().enumerate() {
            let idx = start + i;
            let Err(e) = &results[idx] else { continue };
            match retry_type(u.r#type, e.code) {
                Some(Some(ty)) => {
                    tracing::debug!(
                        "retrying a {:?} refused with {:?} as {ty:?}",
                        p4::update::Type::try_from(u.r#type),
                        e.code
                    );
                    retry.push((
                        idx,
                        p4::Update {
                            r#type: ty as i32,
                            entity: u.entity,
                        },
                    ))
                }
                Some(None) => results[idx] = Ok(()),
                None => failed.push((idx, u)),
            }
        }
        if retry.is_empty() {
            continue;
        }
        let (idx, ups): (Vec<usize>, Vec<p4::Update>) = retry.into_iter().unzip();
        let mut again: Vec<Result<(), UpdateError>> = vec![Ok(()); ups.len()];
        let copies = ups.clone();
        let lost = send_chunks(client, vec![(0, ups)], 1, &mut again, &mut rpcs).await;
        for ((i, r), u) in idx.into_iter().zip(again).zip(copies) {
            if r.is_err() {
                failed.push((i, u));
            }
            results[i] = r;
        }
        if let Some(e) = lost {
            let ue = UpdateError {
                code: e.code(),
                message: format!("not sent: {e}"),
            };
            for r in &mut results[end..] {
                *r = Err(ue.clone());
            }
            break;
        }
    }
    failed.sort_by_key(|(i, _)| *i);
    WriteReport {
        results,
        failed,
        rpcs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(ty: p4::update::Type, level: u8, key: u64) -> Planned {
        Planned {
            update: p4::Update {
                r#type: ty as i32,
                entity: None,
            },
            level,
            key,
        }
    }

    use p4::update::Type::{Delete as D, Insert as I, Modify as M};

    #[test]
    fn members_before_groups_before_routes() {
        let u = vec![
            p(I, 0, 1),
            p(I, 0, 2),
            p(I, 1, 3),
            p(I, 1, 4),
            p(I, 2, 5),
            p(I, 3, 6),
            p(I, 3, 7),
            p(I, 0, 8), // an ACL after the routes: nothing it needs is pending
        ];
        assert_eq!(phases(&u), vec![0, 2, 4, 5, 8]);
    }

    #[test]
    fn deletes_in_reverse() {
        let u = vec![
            p(D, 0, 1), // an ACL
            p(D, 3, 2),
            p(D, 3, 3),
            p(D, 2, 4),
            p(D, 1, 5),
            p(D, 0, 6),
        ];
        assert_eq!(phases(&u), vec![0, 3, 4, 5, 6]);
    }

    #[test]
    fn a_route_moves_before_its_old_group_goes() {
        // The diff's order: create the new group, point the route at it,
        // delete the old group.
        let u = vec![p(I, 2, 1), p(M, 3, 2), p(D, 2, 3)];
        assert_eq!(phases(&u), vec![0, 1, 2, 3]);
        // Inserts after a higher delete wait for it.
        let u = vec![p(D, 3, 1), p(I, 1, 2)];
        assert_eq!(phases(&u), vec![0, 1, 2]);
    }

    #[test]
    fn one_entry_twice_never_shares_a_write() {
        let u = vec![p(M, 3, 9), p(I, 3, 1), p(M, 3, 9)];
        assert_eq!(phases(&u), vec![0, 2, 3]);
        assert_eq!(phases(&[]), vec![0]);
    }
}
