//! Primary election among the controllers of the device, following the
//! specification's "Client Arbitration and Controller Replication" rules.
//!
//! The target knows the default role only. The primary is the live
//! controller whose election id equals the highest election id the target
//! has seen; when the primary leaves, there is no primary until a controller
//! sends an arbitration update with an election id at least that high (the
//! backups are told so with status NOT_FOUND). A controller without an
//! election id is a backup forever.
//!
//! This module is pure state: it says which notifications to send to which
//! stream; the server sends them.

use super::error::RpcError;
use p4runtime_proto::google::rpc;
use p4runtime_proto::p4::v1::{MasterArbitrationUpdate, Uint128};
use std::collections::{BTreeMap, BTreeSet};
use tonic::Code;

/// A stream (one controller connection).
pub type StreamId = u64;

pub fn to_u128(id: &Uint128) -> u128 {
    (u128::from(id.high) << 64) | u128::from(id.low)
}

pub fn from_u128(v: u128) -> Uint128 {
    Uint128 {
        high: (v >> 64) as u64,
        low: v as u64,
    }
}

/// The controllers of the default role.
#[derive(Debug)]
pub struct Arbiter {
    device_id: u64,
    /// Live controllers and their election ids.
    live: BTreeMap<StreamId, Option<u128>>,
    /// The highest election id any primary had (`None` before the first).
    highest: Option<u128>,
}

/// Why a role is refused (`None`: the default role).
// The deprecated `role.id` is still honoured: a non-zero one is a role
// this target does not have.
#[allow(deprecated)]
fn role_problem(u: &MasterArbitrationUpdate) -> Option<RpcError> {
    let r = u.role.as_ref()?;
    if r.config.is_some() {
        return Some(RpcError::invalid(
            "the x86 target has no role configuration scheme; leave role.config unset",
        ));
    }
    if !r.name.is_empty() || r.id != 0 {
        let name = if r.name.is_empty() {
            format!("#{}", r.id)
        } else {
            format!("`{}`", r.name)
        };
        return Some(RpcError::not_found(format!(
            "role {name} is unknown: the x86 target has the default role only"
        )));
    }
    None
}

impl Arbiter {
    pub fn new(device_id: u64) -> Self {
        Self {
            device_id,
            live: BTreeMap::new(),
            highest: None,
        }
    }

    /// The stream of the primary controller, if there is one.
    pub fn primary(&self) -> Option<StreamId> {
        let h = self.highest?;
        self.live
            .iter()
            .find(|(_, e)| **e == Some(h))
            .map(|(s, _)| *s)
    }

    pub fn primaries(&self) -> BTreeSet<StreamId> {
        self.primary().into_iter().collect()
    }

    /// The arbitration update `stream` receives now.
    fn notification(&self, stream: StreamId) -> MasterArbitrationUpdate {
        let primary = self.primary();
        let (code, message) = if primary == Some(stream) {
            (Code::Ok, "this controller is the primary")
        } else if primary.is_some() {
            (Code::AlreadyExists, "another controller is the primary")
        } else {
            (Code::NotFound, "there is no primary controller")
        };
        MasterArbitrationUpdate {
            device_id: self.device_id,
            role: None,
            election_id: self.highest.map(from_u128),
            status: Some(rpc::Status {
                code: code as i32,
                message: message.into(),
                details: Vec::new(),
            }),
        }
    }

    fn notify_all(&self, except: Option<StreamId>) -> Vec<(StreamId, MasterArbitrationUpdate)> {
        self.live
            .keys()
            .filter(|s| Some(**s) != except)
            .map(|s| (*s, self.notification(*s)))
            .collect()
    }

    /// Handles an arbitration update from `stream` (`first`: the stream's
    /// first one). On success returns the notifications to send; on error
    /// the stream must be ended with that error (and, if it was live,
    /// removed with [`Arbiter::remove`]).
    pub fn update(
        &mut self,
        stream: StreamId,
        u: &MasterArbitrationUpdate,
    ) -> Result<Vec<(StreamId, MasterArbitrationUpdate)>, RpcError> {
        let first = !self.live.contains_key(&stream);
        if u.device_id != self.device_id {
            let msg = format!(
                "device id {} does not match this target's ({})",
                u.device_id, self.device_id
            );
            return Err(if first {
                RpcError::not_found(msg)
            } else {
                RpcError::failed_precondition(format!("{msg}; the stream's device cannot change"))
            });
        }
        if let Some(e) = role_problem(u) {
            // A live stream has the default role: asking for another one is a
            // role change, which the specification refuses this way.
            return Err(if !first && e.code == Code::NotFound {
                RpcError::failed_precondition(format!(
                    "{}; a stream cannot change its role",
                    e.message
                ))
            } else {
                e
            });
        }
        let eid = u.election_id.as_ref().map(to_u128);
        if let Some(e) = eid {
            if self.live.iter().any(|(s, x)| *s != stream && *x == Some(e)) {
                return Err(RpcError::invalid(format!(
                    "election id {e} is already used by another controller"
                )));
            }
        }
        let was_primary = self.primary() == Some(stream);
        let had_primary = self.primary().is_some();
        self.live.insert(stream, eid);
        match eid {
            Some(e) if self.highest.is_none_or(|h| e >= h) => {
                self.highest = Some(e);
                if had_primary {
                    // The others learn of the change first, then the new
                    // primary.
                    let mut n = self.notify_all(Some(stream));
                    n.push((stream, self.notification(stream)));
                    Ok(n)
                } else {
                    Ok(self.notify_all(None))
                }
            }
            _ if was_primary => Ok(self.notify_all(None)),
            _ => Ok(vec![(stream, self.notification(stream))]),
        }
    }

    /// Removes a stream that ended; returns the notifications to send.
    pub fn remove(&mut self, stream: StreamId) -> Vec<(StreamId, MasterArbitrationUpdate)> {
        let was_primary = self.primary() == Some(stream);
        if self.live.remove(&stream).is_none() || !was_primary {
            return Vec::new();
        }
        self.notify_all(None)
    }

    /// Whether a request with this role and election id comes from the
    /// primary: NOT_FOUND for an unknown role, PERMISSION_DENIED otherwise.
    pub fn check_primary(
        &self,
        role: &str,
        role_id: u64,
        election_id: Option<&Uint128>,
    ) -> Result<(), RpcError> {
        if !role.is_empty() || role_id != 0 {
            return Err(RpcError::not_found(format!(
                "role `{role}` is unknown: the x86 target has the default role only"
            )));
        }
        if self.primary().is_none() {
            return Err(RpcError::permission_denied(
                "there is no primary controller (open a stream and win arbitration first)",
            ));
        }
        match election_id.map(to_u128) {
            Some(e) if Some(e) == self.highest => Ok(()),
            Some(e) => Err(RpcError::permission_denied(format!(
                "election id {e} is not the primary's"
            ))),
            None => Err(RpcError::permission_denied(
                "the request has no election id; only the primary may change the target",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p4runtime_proto::p4::v1::Role;

    fn arb(device: u64, eid: Option<u128>) -> MasterArbitrationUpdate {
        MasterArbitrationUpdate {
            device_id: device,
            election_id: eid.map(from_u128),
            ..Default::default()
        }
    }

    fn codes(n: &[(StreamId, MasterArbitrationUpdate)]) -> Vec<(StreamId, i32)> {
        n.iter()
            .map(|(s, u)| (*s, u.status.as_ref().map_or(-1, |s| s.code)))
            .collect()
    }

    const OK: i32 = Code::Ok as i32;
    const EXISTS: i32 = Code::AlreadyExists as i32;
    const NONE: i32 = Code::NotFound as i32;

    #[test]
    fn the_highest_election_id_is_primary() {
        let mut a = Arbiter::new(1);
        assert_eq!(
            codes(&a.update(1, &arb(1, Some(10))).unwrap()),
            vec![(1, OK)]
        );
        // A lower id: a backup, told alone.
        assert_eq!(
            codes(&a.update(2, &arb(1, Some(5))).unwrap()),
            vec![(2, EXISTS)]
        );
        // A higher id takes over: the others first, then the new primary.
        assert_eq!(
            codes(&a.update(3, &arb(1, Some(20))).unwrap()),
            vec![(1, EXISTS), (2, EXISTS), (3, OK)]
        );
        assert_eq!(a.primary(), Some(3));
        let n = a.update(4, &arb(1, None)).unwrap();
        assert_eq!(codes(&n), vec![(4, EXISTS)]);
        assert_eq!(n[0].1.election_id, Some(from_u128(20)));
        assert!(a.check_primary("", 0, Some(&from_u128(20))).is_ok());
        assert_eq!(
            a.check_primary("", 0, Some(&from_u128(10)))
                .unwrap_err()
                .code,
            Code::PermissionDenied
        );
        assert_eq!(
            a.check_primary("", 0, None).unwrap_err().code,
            Code::PermissionDenied
        );
        assert_eq!(
            a.check_primary("r", 0, Some(&from_u128(20)))
                .unwrap_err()
                .code,
            Code::NotFound
        );
    }

    #[test]
    fn no_primary_after_the_primary_leaves_until_someone_claims_it() {
        let mut a = Arbiter::new(1);
        a.update(1, &arb(1, Some(10))).unwrap();
        a.update(2, &arb(1, Some(5))).unwrap();
        assert!(a.remove(2).is_empty(), "a backup leaving tells nobody");
        a.update(2, &arb(1, Some(5))).unwrap();
        assert_eq!(codes(&a.remove(1)), vec![(2, NONE)]);
        assert_eq!(a.primary(), None);
        // Its old id is below the highest seen: still a backup.
        assert_eq!(
            codes(&a.update(2, &arb(1, Some(5))).unwrap()),
            vec![(2, NONE)]
        );
        assert_eq!(
            codes(&a.update(2, &arb(1, Some(11))).unwrap()),
            vec![(2, OK)]
        );
    }

    #[test]
    fn a_primary_may_step_down() {
        let mut a = Arbiter::new(1);
        a.update(1, &arb(1, Some(10))).unwrap();
        a.update(2, &arb(1, Some(5))).unwrap();
        assert_eq!(
            codes(&a.update(1, &arb(1, Some(3))).unwrap()),
            vec![(1, NONE), (2, NONE)]
        );
    }

    #[test]
    fn bad_updates_are_refused() {
        let mut a = Arbiter::new(1);
        assert_eq!(
            a.update(1, &arb(2, Some(1))).unwrap_err().code,
            Code::NotFound
        );
        a.update(1, &arb(1, Some(1))).unwrap();
        assert_eq!(
            a.update(1, &arb(2, Some(1))).unwrap_err().code,
            Code::FailedPrecondition
        );
        assert_eq!(
            a.update(2, &arb(1, Some(1))).unwrap_err().code,
            Code::InvalidArgument
        );
        let mut named = arb(1, Some(7));
        named.role = Some(Role {
            name: "sdn".into(),
            ..Default::default()
        });
        assert_eq!(a.update(3, &named).unwrap_err().code, Code::NotFound);
        assert_eq!(
            a.update(1, &named).unwrap_err().code,
            Code::FailedPrecondition
        );
        named.role = Some(Role {
            config: Some(Default::default()),
            ..Default::default()
        });
        assert_eq!(a.update(3, &named).unwrap_err().code, Code::InvalidArgument);
    }
}
