//! Port numbering: the control plane's port ids (`nos_core::PortId`, handed
//! out by the routing compiler) translated to the target's P4 port numbers
//! and back.
//!
//! The numbering is a function of the port's *name* (the configuration
//! says which P4 port each named port is). The map learns a port's number
//! when the port is created and forgets it when the port is deleted; every
//! delta is rewritten into P4 numbers before it is compiled, and packet-ins
//! are rewritten back (a packet-in from a port the map does not know is
//! dropped).

use nos_core::backend::{PacketDest, PacketIn, PacketOut};
use nos_core::{Delta, ForwardingState, Object, ObjectKey, PortId, RifKind};
use std::collections::HashMap;
use std::sync::Arc;

/// The P4 port number of the port with this name (`None`: it has none).
pub type PortNumbering = Arc<dyn Fn(&str) -> Option<u32> + Send + Sync>;

/// Port ids ↔ P4 port numbers of the ports the model holds.
#[derive(Clone, Debug, Default)]
pub struct PortMap {
    to_p4: HashMap<PortId, u32>,
    to_model: HashMap<u32, PortId>,
}

/// Why a delta cannot be translated.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PortMapError {
    #[error("port {name} has no P4 port number")]
    NoNumber { name: String },
    #[error("port {name} would be P4 port {number}, which port id {other} already is")]
    Taken {
        name: String,
        number: u32,
        other: u32,
    },
    #[error("port id {0} is not programmed")]
    Unknown(u32),
}

impl PortMap {
    /// The P4 port of model port `id`.
    pub fn p4(&self, id: PortId) -> Option<PortId> {
        self.to_p4.get(&id).map(|n| PortId(*n))
    }

    /// The model port of P4 port `number`.
    pub fn model(&self, number: u32) -> Option<PortId> {
        self.to_model.get(&number).copied()
    }

    fn learn(
        &mut self,
        id: PortId,
        name: &str,
        numbering: &PortNumbering,
    ) -> Result<(), PortMapError> {
        let number = numbering(name).ok_or_else(|| PortMapError::NoNumber {
            name: name.to_string(),
        })?;
        if let Some(other) = self.to_model.get(&number) {
            if *other != id {
                return Err(PortMapError::Taken {
                    name: name.to_string(),
                    number,
                    other: other.0,
                });
            }
        }
        if let Some(old) = self.to_p4.insert(id, number) {
            self.to_model.remove(&old);
        }
        self.to_model.insert(number, id);
        Ok(())
    }

    /// Forgets model port `id` (after its deletion went through).
    pub fn forget(&mut self, id: PortId) {
        if let Some(n) = self.to_p4.remove(&id) {
            self.to_model.remove(&n);
        }
    }

    fn port(&self, id: PortId) -> Result<PortId, PortMapError> {
        self.p4(id).ok_or(PortMapError::Unknown(id.0))
    }

    fn back(&self, p4: PortId) -> PortId {
        self.model(p4.0).unwrap_or(p4)
    }

    /// Rewrites `d` into P4 port numbers, learning the number of a port it
    /// creates or modifies.
    pub fn translate(
        &mut self,
        d: &Delta,
        numbering: &PortNumbering,
    ) -> Result<Delta, PortMapError> {
        Ok(match d {
            Delta::Create(o) => Delta::Create(self.object(o, numbering)?),
            Delta::Modify(o) => Delta::Modify(self.object(o, numbering)?),
            Delta::Delete(ObjectKey::Port(id)) => Delta::Delete(ObjectKey::Port(self.port(*id)?)),
            Delta::Delete(k) => Delta::Delete(*k),
        })
    }

    fn object(&mut self, o: &Object, numbering: &PortNumbering) -> Result<Object, PortMapError> {
        let mut o = o.clone();
        match &mut o {
            Object::Port(p) => {
                self.learn(p.id, &p.name, numbering)?;
                p.id = self.port(p.id)?;
            }
            Object::Rif(r) => match &mut r.kind {
                RifKind::Port { port } | RifKind::SubPort { port, .. } => {
                    *port = self.port(*port)?;
                }
                RifKind::Vlan { members, .. } => {
                    for m in members {
                        m.port = self.port(m.port)?;
                    }
                }
            },
            Object::Neighbor(n) => {
                if let Some(p) = &mut n.port {
                    *p = self.port(*p)?;
                }
            }
            Object::Acl(a) => {
                if let Some(p) = &mut a.matches.in_port {
                    *p = self.port(*p)?;
                }
            }
            Object::Vrf(_) | Object::NextHop(_) | Object::Group(_) | Object::Route(_) => {}
        }
        Ok(o)
    }

    /// A packet-in's port as the model knows it (`None`: a port the model
    /// does not hold).
    pub fn packet_in(&self, mut p: PacketIn) -> Option<PacketIn> {
        p.port = self.model(p.port.0)?;
        Some(p)
    }

    /// A packet-out's port as the target knows it.
    pub fn packet_out(&self, mut p: PacketOut) -> Result<PacketOut, PortMapError> {
        p.dest = match p.dest {
            PacketDest::Port(id) => PacketDest::Port(self.port(id)?),
            PacketDest::Ingress(id) => PacketDest::Ingress(self.port(id)?),
        };
        Ok(p)
    }

    /// A state in P4 port numbers rewritten back into model port ids.
    pub fn untranslate(&self, s: &ForwardingState) -> ForwardingState {
        let mut out = ForwardingState::new();
        let mut objects: Vec<Object> = s.objects().collect();
        for o in &mut objects {
            match o {
                Object::Port(p) => p.id = self.back(p.id),
                Object::Rif(r) => match &mut r.kind {
                    RifKind::Port { port } | RifKind::SubPort { port, .. } => {
                        *port = self.back(*port)
                    }
                    RifKind::Vlan { members, .. } => {
                        for m in members {
                            m.port = self.back(m.port);
                        }
                    }
                },
                Object::Neighbor(n) => n.port = n.port.map(|p| self.back(p)),
                Object::Acl(a) => a.matches.in_port = a.matches.in_port.map(|p| self.back(p)),
                _ => {}
            }
        }
        for o in objects {
            if let Err(e) = out.upsert(o) {
                tracing::warn!("cannot translate the model's ports back: {e}");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nos_core::{MacAddr, Port, RifId, RouterInterface, VrfId};

    fn numbering() -> PortNumbering {
        Arc::new(|name: &str| match name {
            "eth1" => Some(7),
            "eth2" => Some(9),
            "dup" => Some(7),
            _ => None,
        })
    }

    fn port(id: u32, name: &str) -> Object {
        Object::Port(Port {
            id: PortId(id),
            name: name.into(),
            mtu: 1500,
            admin_up: true,
        })
    }

    #[test]
    fn ports_and_their_users_are_renumbered_and_back() {
        let n = numbering();
        let mut m = PortMap::default();
        let d = m.translate(&Delta::Create(port(1, "eth1")), &n).unwrap();
        assert_eq!(d, Delta::Create(port(7, "eth1")));
        m.translate(&Delta::Create(port(2, "eth2")), &n).unwrap();
        let rif = Object::from(RouterInterface {
            id: RifId(1),
            name: "e2".into(),
            vrf: VrfId::DEFAULT,
            kind: RifKind::Port { port: PortId(2) },
            mac: MacAddr([2, 0, 0, 0, 0, 1]),
            mtu: 1500,
            admin_up: true,
        });
        let Delta::Create(Object::Rif(r)) = m.translate(&Delta::Create(rif), &n).unwrap() else {
            panic!("a rif");
        };
        assert_eq!(r.kind, RifKind::Port { port: PortId(9) });
        let pin = PacketIn {
            port: PortId(9),
            reason: nos_core::backend::PuntReason::Arp,
            frame: vec![],
        };
        assert_eq!(m.packet_in(pin.clone()).unwrap().port, PortId(2));
        assert!(m
            .packet_in(PacketIn {
                port: PortId(3),
                ..pin
            })
            .is_none());
        let out = m
            .packet_out(PacketOut {
                dest: PacketDest::Ingress(PortId(1)),
                frame: vec![],
            })
            .unwrap();
        assert_eq!(out.dest, PacketDest::Ingress(PortId(7)));
        let mut s = ForwardingState::new();
        s.upsert(port(7, "eth1")).unwrap();
        let back = m.untranslate(&s);
        assert!(back.ports().contains_key(&PortId(1)));
        let d = m
            .translate(&Delta::Delete(ObjectKey::Port(PortId(1))), &n)
            .unwrap();
        assert_eq!(d, Delta::Delete(ObjectKey::Port(PortId(7))));
        m.forget(PortId(1));
        assert_eq!(m.p4(PortId(1)), None);
    }

    #[test]
    fn missing_and_taken_numbers_are_refused() {
        let n = numbering();
        let mut m = PortMap::default();
        assert_eq!(
            m.translate(&Delta::Create(port(1, "nope")), &n),
            Err(PortMapError::NoNumber {
                name: "nope".into()
            })
        );
        m.translate(&Delta::Create(port(1, "eth1")), &n).unwrap();
        assert!(matches!(
            m.translate(&Delta::Create(port(2, "dup")), &n),
            Err(PortMapError::Taken { number: 7, .. })
        ));
        assert_eq!(
            m.translate(&Delta::Delete(ObjectKey::Port(PortId(5))), &n),
            Err(PortMapError::Unknown(5))
        );
    }
}
