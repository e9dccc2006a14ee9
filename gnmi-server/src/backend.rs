//! What the gNMI server needs from the daemon, and a store-backed
//! implementation of it.
//!
//! The server knows the configuration document and the state it is shown;
//! it knows nothing of how the daemon programs a forwarding target.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use std::fmt;
use std::sync::Mutex;

use nos_core::config::{Config, ConfigErrors};
use nos_core::store::{ConfigStore, StoreError};

/// Why a commit was refused.
#[derive(Debug, Clone, PartialEq)]
pub enum CommitError {
    /// The configuration fails validation; nothing was committed.
    Invalid(ConfigErrors),
    /// The newest commit is no longer the one the change was made against
    /// (someone else committed in between); nothing was committed. The
    /// server re-reads the configuration and applies the Set again.
    Conflict {
        /// The newest commit now.
        head: Option<u64>,
    },
    /// The store failed (I/O, a damaged database...); nothing was committed.
    Failed(String),
}

impl fmt::Display for CommitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommitError::Invalid(e) => write!(f, "the configuration is invalid: {e}"),
            CommitError::Conflict { head } => match head {
                Some(n) => write!(f, "the configuration changed meanwhile (now commit {n})"),
                None => write!(f, "the configuration changed meanwhile"),
            },
            CommitError::Failed(e) => write!(f, "the commit failed: {e}"),
        }
    }
}

impl std::error::Error for CommitError {}

/// The operational status of an interface (openconfig-interfaces
/// `oper-status`, after IF-MIB's ifOperStatus).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OperStatus {
    Up,
    Down,
    Testing,
    /// The status cannot be determined (also what the server reports for a
    /// port the daemon says nothing about).
    #[default]
    Unknown,
    Dormant,
    /// A component is missing, e.g. the port's Linux interface.
    NotPresent,
    LowerLayerDown,
}

impl OperStatus {
    /// The OpenConfig enumeration value.
    pub fn as_str(self) -> &'static str {
        match self {
            OperStatus::Up => "UP",
            OperStatus::Down => "DOWN",
            OperStatus::Testing => "TESTING",
            OperStatus::Unknown => "UNKNOWN",
            OperStatus::Dormant => "DORMANT",
            OperStatus::NotPresent => "NOT_PRESENT",
            OperStatus::LowerLayerDown => "LOWER_LAYER_DOWN",
        }
    }
}

/// Interface counters since the daemon started (openconfig-interfaces
/// `state/counters`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InterfaceCounters {
    pub in_octets: u64,
    pub in_pkts: u64,
    pub in_errors: u64,
    pub in_discards: u64,
    pub out_octets: u64,
    pub out_pkts: u64,
    pub out_errors: u64,
    pub out_discards: u64,
}

/// The state of one port.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InterfaceState {
    pub oper_status: OperStatus,
    /// `None` when the forwarding target keeps no counters for the port.
    pub counters: Option<InterfaceCounters>,
}

/// A BGP session's state (RFC 4271's FSM; openconfig-bgp `session-state`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SessionState {
    #[default]
    Idle,
    Connect,
    Active,
    OpenSent,
    OpenConfirm,
    Established,
}

impl SessionState {
    /// The OpenConfig enumeration value.
    pub fn as_str(self) -> &'static str {
        match self {
            SessionState::Idle => "IDLE",
            SessionState::Connect => "CONNECT",
            SessionState::Active => "ACTIVE",
            SessionState::OpenSent => "OPENSENT",
            SessionState::OpenConfirm => "OPENCONFIRM",
            SessionState::Established => "ESTABLISHED",
        }
    }
}

/// A BGP address family (openconfig-bgp-types `AFI_SAFI_TYPE`, the ones
/// the speaker carries).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum BgpFamily {
    Ipv4Unicast,
    Ipv6Unicast,
}

/// Prefix counts of one neighbor and family (openconfig-bgp
/// `afi-safi/state/prefixes`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BgpPrefixes {
    /// Accepted by import policy (the post-policy Adj-RIB-In).
    pub received: u64,
    /// Advertised to the neighbor (Adj-RIB-Out).
    pub sent: u64,
    /// Selected as best into the Loc-RIB.
    pub installed: u64,
}

/// The state of one BGP neighbor.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BgpNeighborState {
    pub session_state: SessionState,
    /// The hold time agreed with the peer, while the session is up.
    pub negotiated_hold_time: Option<u16>,
    /// The families negotiated with the peer (`active`), with their counts.
    pub families: BTreeMap<BgpFamily, BgpPrefixes>,
}

/// The BGP speaker's state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BgpState {
    /// Prefixes in the Loc-RIB.
    pub total_prefixes: u64,
    pub neighbors: BTreeMap<IpAddr, BgpNeighborState>,
}

/// A next hop of the installed forwarding table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AftNextHop {
    pub ip_address: Option<IpAddr>,
    /// The resolved neighbor's MAC address, when resolved.
    pub mac_address: Option<String>,
    /// The port and subinterface index it leaves through, when the router
    /// interface is on a port (not a VLAN interface).
    pub interface: Option<(String, u32)>,
}

/// The installed forwarding table of one VRF (openconfig-aft).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Aft {
    /// Prefix → its next-hop group (`None` for drop and to-CPU routes).
    pub entries: BTreeMap<IpNet, Option<u64>>,
    /// Group id → next-hop index → weight.
    pub next_hop_groups: BTreeMap<u64, BTreeMap<u64, u64>>,
    pub next_hops: BTreeMap<u64, AftNextHop>,
}

/// A neighbor's reachability (openconfig-if-ip `neighbor-state`, shown for
/// IPv6 neighbors).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum NeighborState {
    /// Being resolved: no link-layer address yet.
    #[default]
    Incomplete,
    Reachable,
    Stale,
    Delay,
    /// Unconfirmed for a while: being probed.
    Probe,
}

impl NeighborState {
    /// The OpenConfig enumeration value.
    pub fn as_str(self) -> &'static str {
        match self {
            NeighborState::Incomplete => "INCOMPLETE",
            NeighborState::Reachable => "REACHABLE",
            NeighborState::Stale => "STALE",
            NeighborState::Delay => "DELAY",
            NeighborState::Probe => "PROBE",
        }
    }
}

/// How a neighbor entry was made (openconfig-if-ip `origin`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum NeighborOrigin {
    /// Configured.
    Static,
    /// Learned by ARP or neighbor discovery.
    #[default]
    Dynamic,
}

impl NeighborOrigin {
    /// The OpenConfig enumeration value.
    pub fn as_str(self) -> &'static str {
        match self {
            NeighborOrigin::Static => "STATIC",
            NeighborOrigin::Dynamic => "DYNAMIC",
        }
    }
}

/// An ARP or neighbor-discovery entry (openconfig-if-ip
/// `neighbors/neighbor/state`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Neighbor {
    /// The MAC address (`02:00:00:00:00:01`), once resolved.
    pub link_layer_address: Option<String>,
    pub origin: NeighborOrigin,
    pub state: NeighborState,
}

/// The BGP `ORIGIN` attribute (openconfig-rib-bgp `attr-set/state/origin`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum BgpOrigin {
    #[default]
    Igp,
    Egp,
    Incomplete,
}

impl BgpOrigin {
    /// The OpenConfig enumeration value.
    pub fn as_str(self) -> &'static str {
        match self {
            BgpOrigin::Igp => "IGP",
            BgpOrigin::Egp => "EGP",
            BgpOrigin::Incomplete => "INCOMPLETE",
        }
    }
}

/// A path of the BGP Loc-RIB (openconfig-rib-bgp `loc-rib/routes/route`):
/// one the speaker selected for its prefix (the best path, or an
/// equal-cost one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BgpRoute {
    pub prefix: IpNet,
    /// The neighbor the path was learned from; `None` for a network this
    /// speaker originates.
    pub peer: Option<IpAddr>,
    /// The ADD-PATH path id (0 without ADD-PATH).
    pub path_id: u32,
    /// Its attributes.
    pub origin: BgpOrigin,
    pub next_hop: Option<IpAddr>,
    pub local_pref: Option<u32>,
    pub med: Option<u32>,
}

/// The BGP Loc-RIB, in the order the server shows it.
pub type LocRib = Vec<BgpRoute>;

/// The operational state the server shows (read-only paths).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct State {
    /// By port name (the config's `ports[].name`).
    pub interfaces: BTreeMap<String, InterfaceState>,
    /// When the NOS started, in nanoseconds since the Unix epoch
    /// (openconfig-system `boot-time`).
    pub boot_time_ns: Option<u64>,
    /// `None` when BGP does not run (or does not answer).
    pub bgp: Option<BgpState>,
    /// ARP and neighbor-discovery entries, by router interface name (the
    /// config's `interfaces[].name`), then address.
    pub neighbors: BTreeMap<String, BTreeMap<IpAddr, Neighbor>>,
}

/// The installed forwarding tables, by VRF name (`default` for the default
/// VRF).
pub type Afts = BTreeMap<String, Aft>;

/// Where the data the server shows stands; the backend publishes a new one
/// whenever it may have changed (see [`Backend::changes`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Generation {
    /// The newest commit. Every commit is announced, whether or not it
    /// changed the configuration.
    pub commit: Option<u64>,
    /// Bumped whenever the state may have changed: event-driven state (an
    /// interface's oper-status) as the event happens, counters whenever the
    /// backend refreshes them.
    pub state: u64,
}

/// The daemon's side of the gNMI server.
#[tonic::async_trait]
pub trait Backend: Send + Sync + 'static {
    /// The committed configuration and its commit number (`None` before the
    /// first commit).
    async fn config(&self) -> (Config, Option<u64>);

    /// Validates `config` and commits it as ONE commit of the config store,
    /// with `message`, provided the newest commit is still `expected_head`
    /// (the commit the change was computed from); returns the new commit's
    /// number. Nothing is written when this fails.
    async fn commit(
        &self,
        config: Config,
        message: String,
        expected_head: Option<u64>,
    ) -> Result<u64, CommitError>;

    /// The operational state now.
    async fn state(&self) -> State;

    /// The forwarding tables installed in the target now (openconfig-aft).
    /// Asked for separately from [`state`](Backend::state), only by requests
    /// whose paths can reach `afts`, since a full table is large. Changes
    /// to it are announced like other state changes (the server re-reads
    /// it for ON_CHANGE subscribers to it at every [`changes`]
    /// notification). None by default.
    ///
    /// [`changes`]: Backend::changes
    async fn afts(&self) -> Afts {
        Afts::new()
    }

    /// The BGP speaker's Loc-RIB now (openconfig-rib-bgp), asked for like
    /// [`afts`](Backend::afts): only by requests whose paths can reach the
    /// BGP `rib`. Empty by default.
    async fn loc_rib(&self) -> LocRib {
        LocRib::new()
    }

    /// Change notifications. After each, the server reads [`config`] and
    /// [`state`] again and sends ON_CHANGE subscribers the leaves that
    /// changed; notifications that come faster than it reads are coalesced.
    /// This is what drives ON_CHANGE: the server does not poll.
    ///
    /// [`config`]: Backend::config
    /// [`state`]: Backend::state
    fn changes(&self) -> tokio::sync::watch::Receiver<Generation>;
}

/// A [`Backend`] on a [`ConfigStore`] with state set by hand: what the tests
/// use, and a reference for the daemon's implementation.
pub struct StoreBackend {
    store: ConfigStore,
    /// The newest commit's configuration and number; the lock also orders
    /// commits.
    head: tokio::sync::Mutex<(Config, Option<u64>)>,
    state: Mutex<State>,
    afts: Mutex<Afts>,
    loc_rib: Mutex<LocRib>,
    changes: tokio::sync::watch::Sender<Generation>,
}

impl fmt::Debug for StoreBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreBackend")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

impl StoreBackend {
    /// Serves the newest commit of `store` (an empty configuration before
    /// the first). This backend must be the store's only writer.
    pub fn new(store: ConfigStore) -> Result<Self, StoreError> {
        let head = match store.head()? {
            Some(c) => (c.config, Some(c.info.number)),
            None => (Config::default(), None),
        };
        let generation = Generation {
            commit: head.1,
            state: 0,
        };
        Ok(Self {
            store,
            head: tokio::sync::Mutex::new(head),
            state: Mutex::new(State::default()),
            afts: Mutex::new(Afts::new()),
            loc_rib: Mutex::new(LocRib::new()),
            changes: tokio::sync::watch::Sender::new(generation),
        })
    }

    /// The store (for its history).
    pub fn store(&self) -> &ConfigStore {
        &self.store
    }

    /// Sets the state [`Backend::state`] returns, and announces the change.
    pub fn set_state(&self, state: State) {
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = state;
        self.changes.send_modify(|g| g.state += 1);
    }

    /// Sets the forwarding tables [`Backend::afts`] returns, and announces
    /// the change.
    pub fn set_afts(&self, afts: Afts) {
        *self.afts.lock().unwrap_or_else(|e| e.into_inner()) = afts;
        self.changes.send_modify(|g| g.state += 1);
    }

    /// Sets the Loc-RIB [`Backend::loc_rib`] returns, and announces the
    /// change.
    pub fn set_loc_rib(&self, rib: LocRib) {
        *self.loc_rib.lock().unwrap_or_else(|e| e.into_inner()) = rib;
        self.changes.send_modify(|g| g.state += 1);
    }
}

#[tonic::async_trait]
impl Backend for StoreBackend {
    async fn config(&self) -> (Config, Option<u64>) {
        self.head.lock().await.clone()
    }

    async fn commit(
        &self,
        config: Config,
        message: String,
        expected_head: Option<u64>,
    ) -> Result<u64, CommitError> {
        let mut head = self.head.lock().await;
        if head.1 != expected_head {
            return Err(CommitError::Conflict { head: head.1 });
        }
        // The store validates before it writes (StoreError::Invalid).
        let store = self.store.clone();
        let to_store = config.clone();
        let info = tokio::task::spawn_blocking(move || store.commit(&to_store, Some(&message)))
            .await
            .map_err(|e| CommitError::Failed(format!("the commit task failed: {e}")))?
            .map_err(|e| match e {
                StoreError::Invalid(errors) => CommitError::Invalid(errors),
                other => CommitError::Failed(other.to_string()),
            })?;
        *head = (config, Some(info.number));
        self.changes.send_modify(|g| g.commit = Some(info.number));
        Ok(info.number)
    }

    async fn state(&self) -> State {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    async fn afts(&self) -> Afts {
        self.afts.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    async fn loc_rib(&self) -> LocRib {
        self.loc_rib
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn changes(&self) -> tokio::sync::watch::Receiver<Generation> {
        self.changes.subscribe()
    }
}
