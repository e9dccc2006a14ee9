//! Longest-prefix match over IPv4 (`u32`) and IPv6 (`u128`) keys.
//!
//! The structure is a compressed multibit trie in the style of Poptrie (Asai and
//! Ohara, SIGCOMM 2015):
//!
//! * a *direct* array indexed by the top `s` bits of the key. An entry is either a
//!   leaf (bit 31 set, the value in the low bits) or the index of a node. `s` grows
//!   with the table: 8 bits (256 entries) for small tables, 18 bits (256 Ki
//!   entries) from 2,048 prefixes and, for IPv4 tables of at least 131,072 prefixes (full Internet
//!   tables), 24 bits (DIR-24-8 style) so that the dominant /24 and shorter
//!   prefixes resolve with a single memory access. Entries are kept in one byte
//!   while the values fit and nodes are rare (a router's route values are its
//!   few distinct actions), else in 16 bits while they fit (a 15-bit value, or
//!   the position of a node in a small table of roots): a full table's array is
//!   16 MiB (or 32) rather than 64, and mostly stays in a server's last-level
//!   cache; a value or root that does not fit widens it;
//! * *nodes* with a stride of 6 bits. A node has two 64-bit vectors: `vector` marks
//!   the slots that continue in a child node, `leafvec` marks the slots where a new
//!   run of equal leaf values starts. The children of a node are stored contiguously
//!   from `base1`, its (run-compressed) leaves contiguously from `base0`, so the
//!   position of a slot's child or leaf is a popcount of the vector below it.
//!
//! A lookup is one direct-array read plus, for keys under prefixes longer than `s`,
//! one node per 6 bits and a final leaf read. [`Lpm::lookup_bulk`] looks up a
//! burst of keys a level at a time, with the direct entries prefetched first,
//! so that the reads of many keys are in flight at once. Leaves are run-length compressed and
//! nodes are 24 bytes, so the part below the direct array stays small (about 14 MiB
//! for a 900k-prefix IPv4 table with `s` = 18).
//!
//! [`Lpm::build`] bulk-loads a whole prefix list (sorting it once, then building
//! the trie top-down in a single recursive pass). [`Lpm::update`] patches a built
//! table after one prefix of its [`PrefixMap`] changed: it repaints the direct
//! entries the prefix spans or rebuilds the smallest subtree holding it, appending
//! the new nodes and leaves and counting the replaced ones as garbage until
//! [`Lpm::needs_compaction`] says a bulk load is due. Readers never see a table
//! being patched: the dataplane patches a copy no worker is using and publishes
//! it whole (see `engine::writer`).

use super::tables::FastMap;
use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

/// A key type: an unsigned integer holding an address, most significant bit first.
pub trait Key: Copy + Ord + std::hash::Hash + fmt::Debug + Send + Sync + 'static {
    /// Width of the key in bits.
    const BITS: u32;
    /// The `n` bits starting `off` bits from the top, with zeros past the end of the
    /// key. Needs `off < BITS` and `1 <= n <= BITS`.
    fn bits(self, off: u32, n: u32) -> usize;
    /// The key with every bit after the first `len` cleared (`len <= BITS`).
    fn truncate(self, len: u8) -> Self;
    /// The last key of the prefix (`self`, `len`): every bit after the first `len` set.
    fn last(self, len: u8) -> Self;
    /// The key whose top `n` bits (`1 <= n <= 32`) are `v`, the rest zero.
    fn from_top_bits(v: u64, n: u32) -> Self;
}

macro_rules! impl_key {
    ($t:ty) => {
        impl Key for $t {
            const BITS: u32 = <$t>::BITS;

            #[inline(always)]
            fn bits(self, off: u32, n: u32) -> usize {
                ((self << off) >> (Self::BITS - n)) as usize
            }

            #[inline]
            fn truncate(self, len: u8) -> Self {
                if len == 0 {
                    0
                } else {
                    self & (<$t>::MAX << (Self::BITS - u32::from(len)))
                }
            }

            #[inline]
            fn from_top_bits(v: u64, n: u32) -> Self {
                (v as $t) << (Self::BITS - n)
            }

            #[inline]
            fn last(self, len: u8) -> Self {
                if u32::from(len) >= Self::BITS {
                    self
                } else {
                    self | (<$t>::MAX >> len)
                }
            }
        }
    };
}

impl_key!(u32);
impl_key!(u128);

/// Bits per trie node.
const STRIDE: u32 = 6;
/// Slots per trie node.
const FANOUT: usize = 1 << STRIDE;
/// Marks a direct-array entry as a leaf rather than a node index.
const LEAF: u32 = 1 << 31;
/// Largest value a table can hold.
pub const MAX_VALUE: u32 = LEAF - 2;
/// Direct-array bits for large tables.
const DIRECT_BITS_LARGE: u32 = 18;
/// Direct-array bits for full IPv4 tables.
const DIRECT_BITS_FULL_V4: u32 = 24;
/// IPv4 tables with at least this many prefixes use the 24-bit direct array.
const FULL_V4_TABLE: usize = 1 << 17;
/// Largest direct array accepted by [`Lpm::build_with_direct_bits`].
pub const MAX_DIRECT_BITS: u32 = 24;
/// Direct-array bits for small tables (256 entries).
const DIRECT_BITS_SMALL: u32 = 8;
/// Tables with at least this many prefixes use the large direct array.
const LARGE_TABLE: usize = 2048;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Node {
    /// Slots that continue in a child node.
    vector: u64,
    /// Slots where a run of equal leaf values starts.
    leafvec: u64,
    /// Index of this node's first leaf.
    base0: u32,
    /// Index of this node's first child.
    base1: u32,
}

/// One prefix to load: the address (host bits may be set; they are ignored), the
/// prefix length and the value a lookup returns for addresses it covers.
pub type Prefix<K> = (K, u8, u32);

/// Keys per pass of [`Lpm::lookup_bulk`]: a burst of the workers.
pub const BULK: usize = 64;

/// A longest-prefix-match table from prefixes of `K` to `u32` values.
pub struct Lpm<K> {
    direct_bits: u32,
    /// Leaf (`LEAF | stored`) or node index, per top `direct_bits` bits (see
    /// [`Direct`] for how it is kept). Empty when the table has no prefix. A
    /// stored value of 0 means "no route", `v + 1` means value `v`; the same
    /// encoding is used in `leaves`.
    direct: Direct,
    nodes: Vec<Node>,
    leaves: Vec<u32>,
    prefixes: usize,
    /// Nodes and leaves left unreachable by [`Lpm::update`].
    garbage_nodes: usize,
    garbage_leaves: usize,
    _key: PhantomData<K>,
}

/// A narrow entry's leaf bit; the low 15 bits are the stored value.
const NARROW_LEAF: u16 = 1 << 15;
/// Largest stored value, and number of roots, a narrow array can hold.
const NARROW_MAX: u32 = (1 << 15) - 1;
/// A byte entry whose slot continues in a node; lower bytes are stored values.
const BYTE_NODE: u8 = u8::MAX;
/// A byte direct array has at most one node per this many slots.
const BYTE_NODES_PER: usize = 64;

/// The direct array. Its entries mean what the 32-bit encoding says (a leaf,
/// `LEAF | stored`, or a node index) but are kept as small as they fit:
///
/// * in one byte while every stored value is below [`BYTE_NODE`] (values are
///   indices of distinct route actions, of which a router has few): the byte
///   is the stored value, or [`BYTE_NODE`] for a slot whose node is found in a
///   hash map by slot. A full IPv4 table's 24-bit array is then 16 MiB, and a
///   random lookup is one read of it (nodes are rare at 24 bits);
/// * in 16 bits while they fit: a leaf whose stored value is below 2^15, or
///   the position in `roots` (the node indices the array points at, at most
///   2^15 of them) of a node (32 MiB for a full IPv4 table);
/// * in 32 bits otherwise.
///
/// A value or a root that does not fit widens the array for good (until the
/// next bulk load tries again). Nodes being rare is checked at a bulk load:
/// updates may add nodes to a byte array (each costing its lookups a hash
/// look-up) until it holds twice as many as a bulk load allows, when
/// [`Lpm::needs_compaction`] asks for one.
#[derive(Debug)]
enum Direct {
    Byte {
        entries: Vec<u8>,
        /// The node of every slot whose entry is [`BYTE_NODE`].
        roots: FastMap<u32, u32>,
    },
    Wide(Vec<u32>),
    Narrow {
        entries: Vec<u16>,
        roots: Vec<u32>,
        /// Positions in `roots` no entry points at any more, reused first.
        free: Vec<u16>,
    },
}

impl Direct {
    /// The entries of `wide`, in bytes or 16 bits when every one fits. Bytes
    /// need rare nodes too: a slot that continues in a node costs a hash
    /// look-up on top of the read of its entry.
    fn from_wide(wide: Vec<u32>) -> Self {
        let mut nodes = 0;
        let small = wide.iter().all(|&w| {
            nodes += usize::from(w & LEAF == 0);
            w & LEAF == 0 || w & !LEAF < u32::from(BYTE_NODE)
        });
        if small && nodes <= wide.len() / BYTE_NODES_PER {
            let mut entries = crate::hugepages::filled_vec(0u8, wide.len());
            let mut roots = FastMap::default();
            for (i, (b, &w)) in entries.iter_mut().zip(&wide).enumerate() {
                if w & LEAF != 0 {
                    *b = (w & !LEAF) as u8;
                } else {
                    *b = BYTE_NODE;
                    roots.insert(i as u32, w);
                }
            }
            return Direct::Byte { entries, roots };
        }
        Self::narrow_or_wide(wide)
    }

    /// The entries of `wide`, narrow when every one fits.
    fn narrow_or_wide(wide: Vec<u32>) -> Self {
        let mut entries = crate::hugepages::filled_vec(NARROW_LEAF, wide.len());
        let mut roots = Vec::new();
        for (n, &w) in entries.iter_mut().zip(&wide) {
            if w & LEAF != 0 && w & !LEAF <= NARROW_MAX {
                *n = NARROW_LEAF | (w & !LEAF) as u16;
            } else if w & LEAF == 0 && roots.len() as u32 <= NARROW_MAX {
                *n = roots.len() as u16;
                roots.push(w);
            } else {
                return Direct::Wide(wide);
            }
        }
        roots.shrink_to_fit();
        Direct::Narrow {
            entries,
            roots,
            free: Vec::new(),
        }
    }

    /// A byte array with more than twice the nodes a bulk load allows it (so
    /// that the bulk load that follows, choosing 16 bits, is not asked for
    /// again and again).
    fn crowded(&self) -> bool {
        match self {
            Direct::Byte { entries, roots } => roots.len() > 2 * (entries.len() / BYTE_NODES_PER),
            Direct::Narrow { .. } | Direct::Wide(_) => false,
        }
    }

    fn len(&self) -> usize {
        match self {
            Direct::Byte { entries, .. } => entries.len(),
            Direct::Wide(v) => v.len(),
            Direct::Narrow { entries, .. } => entries.len(),
        }
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Entry `i` in the 32-bit encoding.
    #[inline(always)]
    fn get(&self, i: usize) -> Option<u32> {
        match self {
            Direct::Byte { entries, roots } => {
                let e = *entries.get(i)?;
                if e == BYTE_NODE {
                    roots.get(&(i as u32)).copied()
                } else {
                    Some(LEAF | u32::from(e))
                }
            }
            Direct::Wide(v) => v.get(i).copied(),
            Direct::Narrow { entries, roots, .. } => {
                let e = *entries.get(i)?;
                if e & NARROW_LEAF != 0 {
                    Some(LEAF | u32::from(e & !NARROW_LEAF))
                } else {
                    roots.get(usize::from(e)).copied()
                }
            }
        }
    }

    /// Sets entry `i` (32-bit encoding), widening the array if it must.
    fn set(&mut self, i: usize, w: u32) {
        if let Direct::Byte { entries, roots } = self {
            if w & LEAF == 0 {
                entries[i] = BYTE_NODE;
                roots.insert(i as u32, w);
                return;
            }
            if w & !LEAF < u32::from(BYTE_NODE) {
                if entries[i] == BYTE_NODE {
                    roots.remove(&(i as u32));
                }
                entries[i] = (w & !LEAF) as u8;
                return;
            }
            *self = Self::narrow_or_wide(self.to_wide());
        }
        if let Direct::Narrow {
            entries,
            roots,
            free,
        } = self
        {
            let old = entries[i];
            if w & LEAF != 0 {
                if w & !LEAF <= NARROW_MAX {
                    if old & NARROW_LEAF == 0 {
                        free.push(old);
                    }
                    entries[i] = NARROW_LEAF | (w & !LEAF) as u16;
                    return;
                }
            } else if old & NARROW_LEAF == 0 {
                roots[usize::from(old)] = w;
                return;
            } else if let Some(r) = free.pop() {
                roots[usize::from(r)] = w;
                entries[i] = r;
                return;
            } else if roots.len() as u32 <= NARROW_MAX {
                entries[i] = roots.len() as u16;
                roots.push(w);
                return;
            }
            *self = Direct::Wide(self.to_wide());
        }
        if let Direct::Wide(v) = self {
            v[i] = w;
        }
    }

    fn to_wide(&self) -> Vec<u32> {
        let mut wide = crate::hugepages::filled_vec(LEAF, self.len());
        for (i, w) in wide.iter_mut().enumerate() {
            *w = self.get(i).unwrap_or(LEAF);
        }
        wide
    }

    fn memory_bytes(&self) -> usize {
        match self {
            // A hash map bucket is its key and value plus a control byte;
            // the map keeps at least one bucket in eight free.
            Direct::Byte { entries, roots } => {
                entries.capacity() + roots.capacity() * 8 / 7 * (2 * std::mem::size_of::<u32>() + 1)
            }
            Direct::Wide(v) => v.capacity() * std::mem::size_of::<u32>(),
            Direct::Narrow {
                entries,
                roots,
                free,
            } => {
                entries.capacity() * std::mem::size_of::<u16>()
                    + roots.capacity() * std::mem::size_of::<u32>()
                    + free.capacity() * std::mem::size_of::<u16>()
            }
        }
    }
}

impl Clone for Direct {
    /// A copy whose entries get huge pages like the original's.
    fn clone(&self) -> Self {
        match self {
            Direct::Byte { entries, roots } => Direct::Byte {
                entries: crate::hugepages::copied_vec(entries),
                roots: roots.clone(),
            },
            Direct::Wide(v) => Direct::Wide(crate::hugepages::copied_vec(v)),
            Direct::Narrow {
                entries,
                roots,
                free,
            } => Direct::Narrow {
                entries: crate::hugepages::copied_vec(entries),
                roots: roots.clone(),
                free: free.clone(),
            },
        }
    }
}

/// IPv4 table.
pub type Lpm4 = Lpm<u32>;
/// IPv6 table.
pub type Lpm6 = Lpm<u128>;

impl<K: Key> fmt::Debug for Lpm<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lpm")
            .field("key_bits", &K::BITS)
            .field("prefixes", &self.prefixes)
            .field("direct_bits", &self.direct_bits)
            .field("nodes", &self.nodes.len())
            .field("leaves", &self.leaves.len())
            .field("memory_bytes", &self.memory_bytes())
            .finish()
    }
}

impl<K> Clone for Lpm<K> {
    /// A copy whose direct array gets huge pages like the original's.
    fn clone(&self) -> Self {
        Lpm {
            direct_bits: self.direct_bits,
            direct: self.direct.clone(),
            nodes: self.nodes.clone(),
            leaves: self.leaves.clone(),
            prefixes: self.prefixes,
            garbage_nodes: self.garbage_nodes,
            garbage_leaves: self.garbage_leaves,
            _key: PhantomData,
        }
    }
}

impl<K: Key> Default for Lpm<K> {
    fn default() -> Self {
        Self::empty()
    }
}

impl<K: Key> Lpm<K> {
    /// A table without prefixes: every lookup misses.
    pub fn empty() -> Self {
        Lpm {
            direct_bits: DIRECT_BITS_SMALL,
            direct: Direct::Wide(Vec::new()),
            nodes: Vec::new(),
            leaves: Vec::new(),
            prefixes: 0,
            garbage_nodes: 0,
            garbage_leaves: 0,
            _key: PhantomData,
        }
    }

    /// Bulk-loads a table, choosing the direct-array size from the number of
    /// prefixes and the key width. Prefixes longer than the key and values above
    /// [`MAX_VALUE`] are ignored; of two entries with the same prefix, one wins
    /// (which one is unspecified).
    pub fn build(prefixes: Vec<Prefix<K>>) -> Self {
        let bits = Self::direct_bits_for(prefixes.len());
        Self::build_with_direct_bits(prefixes, bits)
    }

    /// The direct-array width [`Lpm::build`] picks for `n` prefixes.
    pub fn direct_bits_for(n: usize) -> u32 {
        if K::BITS == 32 && n >= FULL_V4_TABLE {
            DIRECT_BITS_FULL_V4
        } else if n >= LARGE_TABLE {
            DIRECT_BITS_LARGE
        } else {
            DIRECT_BITS_SMALL
        }
    }

    /// Bulk-loads the prefixes of `map`.
    pub fn from_map(map: &PrefixMap<K>) -> Self {
        Self::build(map.to_vec())
    }

    /// Bulk-loads the prefixes of `map` (the table's own, after updates) with
    /// this table's direct-array width, unless its size has moved far enough
    /// to call for another (see [`Lpm::needs_compaction`]).
    pub fn reloaded(&self, map: &PrefixMap<K>) -> Self {
        let bits = if self.resize_due(map.len()) {
            Self::direct_bits_for(map.len())
        } else {
            self.direct_bits
        };
        Self::build_with_direct_bits(map.to_vec(), bits)
    }

    /// Whether a table of `n` prefixes should change its direct-array width:
    /// at once when it grows past a threshold, but only well below one when it
    /// shrinks, so a table near a threshold does not flip back and forth.
    fn resize_due(&self, n: usize) -> bool {
        let wanted = Self::direct_bits_for(n);
        if self.direct.is_empty() {
            return wanted != self.direct_bits;
        }
        wanted > self.direct_bits
            || (wanted < self.direct_bits && Self::direct_bits_for(n * 2) < self.direct_bits)
    }

    /// Bulk-loads a table with a direct array of `2^bits` entries (`bits` is
    /// clamped to 1..=[`MAX_DIRECT_BITS`] and to the key width): more bits trade
    /// memory for fewer node hops.
    pub fn build_with_direct_bits(mut prefixes: Vec<Prefix<K>>, bits: u32) -> Self {
        prefixes.retain(|p| u32::from(p.1) <= K::BITS && p.2 <= MAX_VALUE);
        for p in prefixes.iter_mut() {
            p.0 = p.0.truncate(p.1);
        }
        // Sorting by (address, length) puts every prefix before the prefixes it
        // contains, which is what the painting below relies on: a more specific
        // prefix always overwrites a less specific one.
        prefixes.sort_unstable_by_key(|p| (p.0, p.1));
        prefixes.dedup_by_key(|p| (p.0, p.1));
        if prefixes.is_empty() {
            return Self::empty();
        }
        let direct_bits = bits.clamp(1, MAX_DIRECT_BITS.min(K::BITS));
        let mut b = Builder::<K> {
            nodes: Vec::new(),
            leaves: Vec::new(),
            _key: PhantomData,
        };
        let mut direct = crate::hugepages::filled_vec(LEAF, 1 << direct_bits);
        let mut deeper = false;
        for p in &prefixes {
            if u32::from(p.1) <= direct_bits {
                let first = p.0.bits(0, direct_bits);
                let span = 1usize << (direct_bits - u32::from(p.1));
                direct[first..first + span].fill(LEAF | (p.2 + 1));
            } else {
                deeper = true;
            }
        }
        if deeper {
            for run in SlotRuns::new(&prefixes, 0, direct_bits) {
                let (slot, list) = run;
                if list.iter().any(|p| u32::from(p.1) > direct_bits) {
                    let node = b.node(list, direct_bits, direct[slot] & !LEAF);
                    direct[slot] = b.nodes.len() as u32;
                    b.nodes.push(node);
                }
            }
        }
        b.nodes.shrink_to_fit();
        b.leaves.shrink_to_fit();
        Lpm {
            direct_bits,
            direct: Direct::from_wide(direct),
            nodes: b.nodes,
            leaves: b.leaves,
            prefixes: prefixes.len(),
            garbage_nodes: 0,
            garbage_leaves: 0,
            _key: PhantomData,
        }
    }

    /// Brings the table in line with `map` after the prefix (`addr`, `len`) was
    /// inserted into it, given a new value or removed from it; every other prefix
    /// must be as the table already has it. The work is proportional to the
    /// prefixes inside (`addr`, `len`) and, for a prefix longer than the direct
    /// array, inside the smallest trie node that holds it.
    pub fn update(&mut self, map: &PrefixMap<K>, addr: K, len: u8) {
        if u32::from(len) > K::BITS {
            return;
        }
        let addr = addr.truncate(len);
        let len = u32::from(len);
        self.prefixes = map.len();
        if self.direct.is_empty() {
            self.direct =
                Direct::from_wide(crate::hugepages::filled_vec(LEAF, 1 << self.direct_bits));
        }
        let d = self.direct_bits;
        if len == d {
            // One direct entry (the most common case: a /24 in a full table).
            let slot = addr.bits(0, d);
            let val = map.covering(addr, len);
            let entry = self.direct.get(slot).unwrap_or(LEAF);
            if entry & LEAF != 0 {
                self.direct.set(slot, LEAF | val);
            } else {
                self.rebuild(map, Some(slot), entry as usize, addr, d, val);
            }
            return;
        }
        if len < d {
            // Repaint the direct entries the prefix spans: the covering value
            // first, then every more specific prefix up to the direct depth, in
            // (address, length) order so the most specific is painted last.
            // Slots a more specific prefix paints keep their value: the change
            // cannot reach them (nor the trie nodes below them).
            let first = addr.bits(0, d);
            let mut vals = vec![map.covering(addr, len); 1 << (d - len)];
            let mut shadowed = vec![false; vals.len()];
            for (a, l, v) in map.within(addr, len as u8) {
                let l = u32::from(l);
                if l > len && l <= d {
                    let at = a.bits(0, d) - first;
                    vals[at..at + (1 << (d - l))].fill(v + 1);
                    shadowed[at..at + (1 << (d - l))].fill(true);
                }
            }
            for (i, &val) in vals.iter().enumerate() {
                let slot = first + i;
                let entry = self.direct.get(slot).unwrap_or(LEAF);
                if entry & LEAF != 0 {
                    self.direct.set(slot, LEAF | val);
                } else if !shadowed[i] {
                    let region = key_of_slot::<K>(slot, d);
                    self.rebuild(map, Some(slot), entry as usize, region, d, val);
                }
            }
            return;
        }
        let slot = addr.bits(0, d);
        let entry = self.direct.get(slot).unwrap_or(LEAF);
        if entry & LEAF != 0 {
            // No node below this slot yet: make one if the slot now has prefixes
            // deeper than the direct array (a removal leaves nothing to do).
            let region = addr.truncate(d as u8);
            let list = map.within(region, d as u8);
            if list.iter().any(|p| u32::from(p.1) > d) {
                let node = self.with_builder(|b| b.node(&list, d, entry & !LEAF));
                self.direct.set(slot, self.nodes.len() as u32);
                self.nodes.push(node);
            }
            return;
        }
        // Descend to the deepest node whose region holds the prefix.
        let (mut idx, mut off) = (entry as usize, d);
        while len > off + STRIDE {
            let node = self.nodes[idx];
            let v = addr.bits(off, STRIDE) as u32;
            if (node.vector >> v) & 1 == 0 {
                break;
            }
            let rank = (node.vector & (u64::MAX >> (63 - v))).count_ones() as usize;
            idx = node.base1 as usize + rank - 1;
            off += STRIDE;
        }
        if off > d && map.get(addr, len as u8).is_none() {
            // A removal may leave the slot with nothing deeper than the direct
            // array: its whole subtree then goes, not only the node below.
            let slot_region = addr.truncate(d as u8);
            if !map
                .within(slot_region, d as u8)
                .iter()
                .any(|p| u32::from(p.1) > d)
            {
                let default = map.covering(slot_region, d);
                self.rebuild(map, Some(slot), entry as usize, slot_region, d, default);
                return;
            }
        }
        let region = addr.truncate(off as u8);
        let default = map.covering(region, off);
        let root_slot = (off == d).then_some(slot);
        self.rebuild(map, root_slot, idx, region, off, default);
    }

    /// Rebuilds the node at `idx`, whose region is (`region`, `off`), and its
    /// subtree from `map`, with `default` (stored encoding) for the addresses no
    /// prefix longer than `off` covers. `slot` is the direct entry pointing at it
    /// when it is a root: a root left without deeper prefixes becomes a leaf.
    fn rebuild(
        &mut self,
        map: &PrefixMap<K>,
        slot: Option<usize>,
        idx: usize,
        region: K,
        off: u32,
        default: u32,
    ) {
        let (nodes, leaves) = self.subtree_size(idx);
        self.garbage_nodes += nodes;
        self.garbage_leaves += leaves;
        let list = map.within(region, off as u8);
        match slot {
            Some(slot) if !list.iter().any(|p| u32::from(p.1) > off) => {
                self.direct.set(slot, LEAF | default);
                self.garbage_nodes += 1;
            }
            _ => {
                let node = self.with_builder(|b| b.node(&list, off, default));
                self.nodes[idx] = node;
            }
        }
    }

    /// Nodes (not counting the node itself) and leaves below node `idx`.
    fn subtree_size(&self, idx: usize) -> (usize, usize) {
        let node = self.nodes[idx];
        let mut nodes = 0;
        let mut leaves = node.leafvec.count_ones() as usize;
        for i in 0..node.vector.count_ones() as usize {
            let (n, l) = self.subtree_size(node.base1 as usize + i);
            nodes += 1 + n;
            leaves += l;
        }
        (nodes, leaves)
    }

    fn with_builder<R>(&mut self, f: impl FnOnce(&mut Builder<K>) -> R) -> R {
        let mut b = Builder {
            nodes: std::mem::take(&mut self.nodes),
            leaves: std::mem::take(&mut self.leaves),
            _key: PhantomData,
        };
        let r = f(&mut b);
        self.nodes = b.nodes;
        self.leaves = b.leaves;
        r
    }

    /// Whether updates have left so much unreachable that a bulk load from the
    /// map would be worth it: more garbage than live nodes or leaves, a table
    /// whose size now calls for a different direct-array width, or a byte
    /// direct array that has gained twice the nodes a bulk load allows it.
    pub fn needs_compaction(&self) -> bool {
        let live_nodes = self.nodes.len() - self.garbage_nodes.min(self.nodes.len());
        let live_leaves = self.leaves.len() - self.garbage_leaves.min(self.leaves.len());
        self.resize_due(self.prefixes)
            || self.garbage_nodes > live_nodes + 1024
            || self.garbage_leaves > live_leaves + 4096
            || self.direct.crowded()
    }

    /// The value of the longest prefix containing `key`, if any.
    #[inline(always)]
    pub fn lookup(&self, key: K) -> Option<u32> {
        let i = key.bits(0, self.direct_bits);
        // The direct entry settles almost every lookup; the trie walk is
        // kept out of line so this part stays small in a caller's loop.
        let root = match &self.direct {
            Direct::Byte { entries, roots } => {
                let e = *entries.get(i)?;
                if e != BYTE_NODE {
                    return u32::from(e).checked_sub(1);
                }
                *roots.get(&(i as u32))?
            }
            Direct::Narrow { entries, roots, .. } => {
                let e = *entries.get(i)?;
                if e & NARROW_LEAF != 0 {
                    return u32::from(e & !NARROW_LEAF).checked_sub(1);
                }
                *roots.get(usize::from(e))?
            }
            Direct::Wide(v) => {
                let d = *v.get(i)?;
                if d & LEAF != 0 {
                    return (d & !LEAF).checked_sub(1);
                }
                d
            }
        };
        self.walk(root, key)
    }

    /// Reads `key`'s direct entry and nothing more (0 when there is none):
    /// a load that brings the entry into the cache before the lookup proper.
    #[inline]
    pub fn touch(&self, key: K) -> u32 {
        let i = key.bits(0, self.direct_bits);
        match &self.direct {
            Direct::Byte { entries, .. } => entries.get(i).map_or(0, |&e| u32::from(e)),
            Direct::Narrow { entries, .. } => entries.get(i).map_or(0, |&e| u32::from(e)),
            Direct::Wide(v) => v.get(i).copied().unwrap_or(0),
        }
    }

    /// Starts loading the direct entries of `keys` into the cache.
    #[inline(always)]
    fn prefetch_direct(&self, keys: &[K]) {
        /// The entries of `keys` in `entries`, whatever their width.
        #[inline(always)]
        fn each<K: Key, T>(entries: &[T], keys: &[K], bits: u32) {
            for k in keys {
                if let Some(e) = entries.get(k.bits(0, bits)) {
                    crate::hugepages::prefetch(e);
                }
            }
        }
        let bits = self.direct_bits;
        match &self.direct {
            Direct::Byte { entries, .. } => each(entries, keys, bits),
            Direct::Narrow { entries, .. } => each(entries, keys, bits),
            Direct::Wide(v) => each(v, keys, bits),
        }
    }

    /// The trie walk from node `idx` under the direct array.
    #[inline(never)]
    fn walk(&self, idx: u32, key: K) -> Option<u32> {
        let mut node = self.nodes.get(idx as usize)?;
        let mut off = self.direct_bits;
        let stored = loop {
            let v = key.bits(off, STRIDE) as u32;
            let upto = u64::MAX >> (63 - v);
            if (node.vector >> v) & 1 == 0 {
                let rank = (node.leafvec & upto).count_ones() as usize;
                let i = (node.base0 as usize + rank).wrapping_sub(1);
                break *self.leaves.get(i)?;
            }
            let rank = (node.vector & upto).count_ones() as usize;
            let i = (node.base1 as usize + rank).wrapping_sub(1);
            node = self.nodes.get(i)?;
            off += STRIDE;
        };
        stored.checked_sub(1)
    }

    /// Looks up `keys` into `out` (as [`Lpm::lookup`] would, one by one), a
    /// chunk of [`BULK`] keys at a time and one trie level at a time: every
    /// key's direct entry first (prefetched while the chunk before was being
    /// looked up), then the next node of every key still walking, and so on,
    /// and the leaves last. The reads of one pass do not
    /// depend on each other and the passes do not branch on what they read
    /// (a mispredicted branch would throw the reads in flight away), so the
    /// processor keeps many of them going at once instead of waiting for each
    /// key's chain of reads in turn.
    /// Keys past the end of `out`, or answers past the end of `keys`, are
    /// left alone.
    pub fn lookup_bulk(&self, keys: &[K], out: &mut [Option<u32>]) {
        let len = keys.len().min(out.len());
        let (keys, out) = (&keys[..len], &mut out[..len]);
        // Per key of the chunk: its direct entry, then its node while it
        // walks, then its leaf.
        let mut at = [0u32; BULK];
        // Keys that walk below the direct array, and those still walking.
        let mut walked = [0u8; BULK];
        let mut walking = [0u8; BULK];
        /// Reads the entries of `ks` into `raw` (`missing` past the array),
        /// in a loop of nothing else, so that as many reads as the processor
        /// allows are in flight.
        #[inline(always)]
        fn read<K: Key, T: Copy>(
            entries: &[T],
            ks: &[K],
            bits: u32,
            missing: T,
            raw: &mut [T; BULK],
        ) {
            for (r, k) in raw.iter_mut().zip(ks) {
                *r = entries.get(k.bits(0, bits)).copied().unwrap_or(missing);
            }
        }
        let bits = self.direct_bits;
        if let Some(first) = keys.get(..keys.len().min(BULK)) {
            self.prefetch_direct(first);
        }
        for (c, (ks, os)) in keys
            .chunks(BULK)
            .zip(out.chunks_mut(BULK))
            .enumerate()
            .map(|(i, x)| (i * BULK, x))
        {
            // The next chunk's direct entries start loading now, so that
            // reading them does not wait for a whole memory round trip.
            if let Some(next) = keys.get(c + BULK..) {
                self.prefetch_direct(&next[..next.len().min(BULK)]);
            }
            // Every key's direct entry, read and then decoded. A leaf gives
            // the key's value; for a node, `at` holds what finds it: the slot
            // (byte entries) or the entry itself.
            let mut n = 0;
            match &self.direct {
                Direct::Byte { entries, .. } => {
                    let mut raw = [0u8; BULK];
                    read(entries, ks, bits, 0, &mut raw);
                    // Nodes are rare at this size: find them only when
                    // there are any.
                    let mut nodes = false;
                    for (o, &b) in os.iter_mut().zip(&raw) {
                        *o = u32::from(b).checked_sub(1);
                        nodes |= b == BYTE_NODE;
                    }
                    if nodes {
                        for (j, (k, &b)) in ks.iter().zip(&raw).enumerate() {
                            at[j] = k.bits(0, bits) as u32;
                            walked[n] = j as u8;
                            n += usize::from(b == BYTE_NODE);
                        }
                    }
                }
                Direct::Narrow { entries, .. } => {
                    let mut raw = [0u16; BULK];
                    read(entries, ks, bits, NARROW_LEAF, &mut raw);
                    let each = os.iter_mut().zip(at.iter_mut()).enumerate();
                    for ((j, (o, at)), &e) in each.zip(&raw) {
                        *o = u32::from(e & !NARROW_LEAF).checked_sub(1);
                        *at = u32::from(e & !NARROW_LEAF);
                        walked[n] = j as u8;
                        n += usize::from(e & NARROW_LEAF == 0);
                    }
                }
                Direct::Wide(v) => {
                    let mut raw = [0u32; BULK];
                    read(v, ks, bits, LEAF, &mut raw);
                    let each = os.iter_mut().zip(at.iter_mut()).enumerate();
                    for ((j, (o, at)), &d) in each.zip(&raw) {
                        *o = (d & !LEAF).checked_sub(1);
                        *at = d;
                        walked[n] = j as u8;
                        n += usize::from(d & LEAF == 0);
                    }
                }
            }
            if n == 0 {
                continue;
            }
            match &self.direct {
                Direct::Byte { roots, .. } => {
                    for &j in &walked[..n] {
                        let e = &mut at[usize::from(j)];
                        *e = roots.get(e).copied().unwrap_or(u32::MAX);
                    }
                }
                Direct::Narrow { roots, .. } => {
                    for &j in &walked[..n] {
                        let e = &mut at[usize::from(j)];
                        *e = roots.get(*e as usize).copied().unwrap_or(u32::MAX);
                    }
                }
                Direct::Wide(_) => {}
            }
            let walkers = n;
            walking[..n].copy_from_slice(&walked[..n]);
            let mut off = bits;
            while n > 0 {
                let mut still = 0;
                for w in 0..n {
                    let j = usize::from(walking[w]);
                    let Some(node) = self.nodes.get(at[j] as usize) else {
                        at[j] = u32::MAX;
                        continue;
                    };
                    let v = ks[j].bits(off, STRIDE) as u32;
                    let upto = u64::MAX >> (63 - v);
                    let child = (node.vector >> v) & 1 != 0;
                    let (bits, base) = if child {
                        (node.vector, node.base1)
                    } else {
                        (node.leafvec, node.base0)
                    };
                    at[j] = base
                        .wrapping_add((bits & upto).count_ones())
                        .wrapping_sub(1);
                    walking[still] = j as u8;
                    still += usize::from(child);
                }
                n = still;
                off += STRIDE;
            }
            for &j in &walked[..walkers] {
                let j = usize::from(j);
                os[j] = self
                    .leaves
                    .get(at[j] as usize)
                    .copied()
                    .unwrap_or(0)
                    .checked_sub(1);
            }
        }
    }

    /// Number of distinct prefixes loaded.
    pub fn len(&self) -> usize {
        self.prefixes
    }

    pub fn is_empty(&self) -> bool {
        self.prefixes == 0
    }

    /// Bytes allocated for the table's arrays (garbage and spare capacity
    /// included).
    pub fn memory_bytes(&self) -> usize {
        self.direct.memory_bytes()
            + self.nodes.capacity() * std::mem::size_of::<Node>()
            + self.leaves.capacity() * std::mem::size_of::<u32>()
    }

    /// Bits of the key the direct array is indexed by.
    pub fn direct_bits(&self) -> u32 {
        self.direct_bits
    }

    /// Number of trie nodes (for statistics).
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }
}

/// The first key of direct slot `slot` of a `bits`-wide direct array.
fn key_of_slot<K: Key>(slot: usize, bits: u32) -> K {
    K::from_top_bits(slot as u64, bits)
}

/// A prefix longer than its key or a value above [`MAX_VALUE`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("prefix length {len} or value {value} out of range")]
pub struct OutOfRange {
    pub len: u8,
    pub value: u32,
}

/// The prefixes an incrementally updated [`Lpm`] holds: the authority
/// [`Lpm::update`] reads from. Values must be at most [`MAX_VALUE`].
#[derive(Clone, Debug)]
pub struct PrefixMap<K> {
    map: BTreeMap<(K, u8), u32>,
    /// How many prefixes there are of each length (0..=128).
    lens: Vec<u32>,
}

impl<K: Key> Default for PrefixMap<K> {
    fn default() -> Self {
        PrefixMap {
            map: BTreeMap::new(),
            lens: vec![0; K::BITS as usize + 1],
        }
    }
}

impl<K: Key> PrefixMap<K> {
    /// Sets the value of a prefix (host bits are ignored); returns the old one.
    /// Prefixes longer than the key and values above [`MAX_VALUE`] are refused
    /// with nothing changed.
    pub fn insert(&mut self, addr: K, len: u8, value: u32) -> Result<Option<u32>, OutOfRange> {
        if u32::from(len) > K::BITS || value > MAX_VALUE {
            return Err(OutOfRange { len, value });
        }
        let old = self.map.insert((addr.truncate(len), len), value);
        if old.is_none() {
            self.lens[usize::from(len)] += 1;
        }
        Ok(old)
    }

    /// Removes a prefix; returns its value.
    pub fn remove(&mut self, addr: K, len: u8) -> Option<u32> {
        if u32::from(len) > K::BITS {
            return None;
        }
        let old = self.map.remove(&(addr.truncate(len), len));
        if old.is_some() {
            self.lens[usize::from(len)] -= 1;
        }
        old
    }

    pub fn get(&self, addr: K, len: u8) -> Option<u32> {
        self.map.get(&(addr.truncate(len), len)).copied()
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Every prefix, sorted by (address, length).
    pub fn to_vec(&self) -> Vec<Prefix<K>> {
        self.map.iter().map(|(&(a, l), &v)| (a, l, v)).collect()
    }

    /// The stored encoding (0 for none, `v + 1` for `v`) of the longest prefix of
    /// length at most `max_len` containing `addr`.
    fn covering(&self, addr: K, max_len: u32) -> u32 {
        for len in (0..=max_len.min(K::BITS) as usize).rev() {
            if self.lens[len] == 0 {
                continue;
            }
            if let Some(v) = self.map.get(&(addr.truncate(len as u8), len as u8)) {
                return v + 1;
            }
        }
        0
    }

    /// The prefixes whose address lies inside (`addr`, `len`), sorted by
    /// (address, length): every prefix the region contains, and the ones
    /// starting at its first address that are shorter than it.
    fn within(&self, addr: K, len: u8) -> Vec<Prefix<K>> {
        let lo = (addr.truncate(len), 0u8);
        let hi = (addr.last(len), u8::MAX);
        self.map
            .range(lo..=hi)
            .map(|(&(a, l), &v)| (a, l, v))
            .collect()
    }
}

struct Builder<K> {
    nodes: Vec<Node>,
    leaves: Vec<u32>,
    _key: PhantomData<K>,
}

impl<K: Key> Builder<K> {
    /// Builds the node for the region `list` lies in, whose first `off` bits are
    /// fixed. `list` holds every prefix longer than `off` in the region (it may also
    /// hold shorter ones, which are already accounted for in `default`, the stored
    /// value of the longest prefix covering the whole region). The node's children
    /// are appended to `self.nodes`, its leaves to `self.leaves`; the node itself is
    /// returned for the caller to place next to its siblings.
    fn node(&mut self, list: &[Prefix<K>], off: u32, default: u32) -> Node {
        let end = off + STRIDE;
        let mut vals = [default; FANOUT];
        let mut vector = 0u64;
        for p in list {
            let len = u32::from(p.1);
            if len <= off {
                continue;
            }
            let slot = p.0.bits(off, STRIDE);
            if len <= end {
                let span = 1usize << (end - len);
                vals[slot..slot + span].fill(p.2 + 1);
            } else {
                vector |= 1 << slot;
            }
        }

        let base0 = self.leaves.len() as u32;
        let mut leafvec = 0u64;
        let mut last = None;
        for (slot, &val) in vals.iter().enumerate() {
            if (vector >> slot) & 1 == 0 && last != Some(val) {
                leafvec |= 1 << slot;
                self.leaves.push(val);
                last = Some(val);
            }
        }

        let mut kids = [Node::default(); FANOUT];
        let mut count = 0;
        if vector != 0 {
            for (slot, sub) in SlotRuns::new(list, off, STRIDE) {
                if (vector >> slot) & 1 == 1 {
                    kids[count] = self.node(sub, end, vals[slot]);
                    count += 1;
                }
            }
        }
        let base1 = self.nodes.len() as u32;
        self.nodes.extend_from_slice(&kids[..count]);
        Node {
            vector,
            leafvec,
            base0,
            base1,
        }
    }
}

/// Splits a list sorted by address into runs sharing the `n` bits at `off`.
struct SlotRuns<'a, K> {
    list: &'a [Prefix<K>],
    off: u32,
    n: u32,
}

impl<'a, K: Key> SlotRuns<'a, K> {
    fn new(list: &'a [Prefix<K>], off: u32, n: u32) -> Self {
        SlotRuns { list, off, n }
    }
}

impl<'a, K: Key> Iterator for SlotRuns<'a, K> {
    type Item = (usize, &'a [Prefix<K>]);

    fn next(&mut self) -> Option<Self::Item> {
        let first = self.list.first()?;
        let slot = first.0.bits(self.off, self.n);
        let len = self
            .list
            .iter()
            .position(|p| p.0.bits(self.off, self.n) != slot)
            .unwrap_or(self.list.len());
        let (run, rest) = self.list.split_at(len);
        self.list = rest;
        Some((slot, run))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn naive<K: Key>(table: &[Prefix<K>], key: K) -> Option<u32> {
        let mut best: Option<(u8, u32)> = None;
        for &(addr, len, val) in table {
            let longer = match best {
                None => true,
                Some((l, _)) => len > l,
            };
            if longer && key.truncate(len) == addr.truncate(len) {
                best = Some((len, val));
            }
        }
        best.map(|b| b.1)
    }

    /// Keeps one entry per prefix so the naive reference is unambiguous.
    fn distinct<K: Key>(mut t: Vec<Prefix<K>>) -> Vec<Prefix<K>> {
        for p in t.iter_mut() {
            p.0 = p.0.truncate(p.1);
        }
        let mut seen = std::collections::HashSet::new();
        t.retain(|p| seen.insert((p.0, p.1)));
        t
    }

    #[test]
    fn full_ipv4_tables_use_a_24_bit_direct_array() {
        let prefixes: Vec<Prefix<u32>> = (0..FULL_V4_TABLE as u32)
            .map(|i| (0x0100_0000 + (i << 8), if i % 2 == 0 { 24 } else { 28 }, i))
            .collect();
        let t = Lpm4::build(prefixes);
        assert_eq!(t.direct_bits(), DIRECT_BITS_FULL_V4);
        assert_eq!(t.lookup(0x0100_0005), Some(0));
        assert_eq!(t.lookup(0x0100_0105), Some(1));
        assert_eq!(t.lookup(0x0100_0115), None);
        assert_eq!(t.lookup(0x0000_0105), None);
    }

    fn is_narrow<K: Key>(t: &Lpm<K>) -> bool {
        matches!(t.direct, Direct::Narrow { .. })
    }

    fn is_byte<K: Key>(t: &Lpm<K>) -> bool {
        matches!(t.direct, Direct::Byte { .. })
    }

    /// A table just big enough for the 24-bit direct array: /24s and, one in
    /// four, a /28 below its slot, with `values` distinct values.
    fn full_v4_table(values: u32) -> Vec<Prefix<u32>> {
        (0..FULL_V4_TABLE as u32)
            .map(|i| {
                (
                    0x0100_0000 + (i << 8),
                    if i % 4 == 0 { 28 } else { 24 },
                    i % values,
                )
            })
            .collect()
    }

    #[test]
    fn a_full_ipv4_table_with_few_values_keeps_its_direct_array_in_bytes() {
        let prefixes = full_v4_table(200);
        let t = Lpm4::build(prefixes.clone());
        assert!(is_byte(&t));
        assert!(
            t.memory_bytes() < 20 << 20,
            "{} bytes: the 24-bit array should take 16 MiB",
            t.memory_bytes()
        );
        let keys: Vec<u32> = prefixes
            .iter()
            .step_by(97)
            .flat_map(|p| [p.0 | 3, p.0 | 0x3f, p.0.wrapping_sub(1)])
            .collect();
        let mut bulk = vec![None; keys.len()];
        t.lookup_bulk(&keys, &mut bulk);
        for (&k, b) in keys.iter().zip(bulk) {
            assert_eq!(t.lookup(k), naive(&prefixes, k), "key {k:#x}");
            assert_eq!(b, naive(&prefixes, k), "bulk, key {k:#x}");
        }
    }

    #[test]
    fn a_bulk_lookup_answers_only_as_many_keys_as_it_has_room_for() {
        // Every layout, each with nodes, so that a key or an answer slot
        // taken for one with a node below it would show.
        let deep: Vec<Prefix<u32>> = (0..300u32)
            .map(|i| (i << 20, if i % 10 == 1 { 28 } else { 12 }, i % 250))
            .collect();
        let mut wide = deep.clone();
        wide.push((0xf000_0000, 4, 70_000));
        let mut narrow = deep.clone();
        narrow.push((0xf000_0000, 4, 1_000));
        let keys: Vec<u32> = (0..100u32).map(|i| (i << 20) | 5).collect();
        let layouts: [fn(&Lpm4) -> bool; 3] =
            [is_byte, is_narrow, |t| matches!(t.direct, Direct::Wide(_))];
        for (table, layout) in [deep, narrow, wide].into_iter().zip(layouts) {
            let t = Lpm4::build_with_direct_bits(table.clone(), 12);
            assert!(layout(&t), "{t:?}");
            // More room than keys: the rest stays as it was.
            let mut out = vec![Some(7_777); 130];
            t.lookup_bulk(&keys, &mut out);
            for (k, o) in keys.iter().zip(&out) {
                assert_eq!(*o, naive(&table, *k), "key {k:#x}");
            }
            assert!(out[100..].iter().all(|o| *o == Some(7_777)), "{t:?}");
            // Fewer answers than keys: the first ones are answered.
            let mut out = vec![Some(7_777); 70];
            t.lookup_bulk(&keys, &mut out);
            for (k, o) in keys.iter().zip(&out) {
                assert_eq!(*o, naive(&table, *k), "key {k:#x}");
            }
        }
    }

    #[test]
    fn a_byte_array_that_gains_many_nodes_asks_for_a_bulk_load() {
        let mut map = PrefixMap::<u32>::default();
        map.insert(0, 0, 1).unwrap();
        let mut t = Lpm4::build_with_direct_bits(map.to_vec(), 18);
        assert!(is_byte(&t));
        // 2^18 slots: a bulk load allows 4,096 nodes; 8,192 are still fine.
        for i in 0..8_192u32 {
            map.insert(i << 14, 20, 2).unwrap();
            t.update(&map, i << 14, 20);
        }
        assert!(is_byte(&t));
        assert!(!t.needs_compaction());
        map.insert(8_192 << 14, 20, 2).unwrap();
        t.update(&map, 8_192 << 14, 20);
        assert!(t.needs_compaction());
        assert_eq!(t.lookup(8_192 << 14), Some(2));
        let t = t.reloaded(&map);
        assert!(is_narrow(&t));
        assert!(!t.needs_compaction());
        assert_eq!(t.lookup(8_192 << 14), Some(2));
        assert_eq!(t.lookup((8_192 << 14) | 0x1000), Some(1));
    }

    #[test]
    fn a_direct_array_with_many_nodes_is_not_kept_in_bytes() {
        // 2,000 of 65,536 slots continue in nodes: more than one in 64.
        let deep: Vec<Prefix<u32>> = (0..2_000u32).map(|i| (i << 16, 20, 1)).collect();
        let t = Lpm4::build_with_direct_bits(deep.clone(), 16);
        assert!(is_narrow(&t));
        let t = Lpm4::build_with_direct_bits(deep[..1_000].to_vec(), 16);
        assert!(is_byte(&t));
        assert_eq!(t.lookup(999 << 16), Some(1));
        assert_eq!(t.lookup((999 << 16) | 0x1000), None);
    }

    #[test]
    fn a_value_too_large_for_a_byte_widens_the_array_and_loses_nothing() {
        let mut map = PrefixMap::<u32>::default();
        for i in 0..600u32 {
            map.insert(i << 12, if i % 3 == 0 { 26 } else { 20 }, i % 250)
                .unwrap();
        }
        let mut t = Lpm4::build_with_direct_bits(map.to_vec(), 16);
        assert!(is_byte(&t));
        // A node appears below a leaf slot and goes again; then a value a byte
        // cannot hold.
        map.insert(0x7000_0000, 28, 5).unwrap();
        t.update(&map, 0x7000_0000, 28);
        assert!(is_byte(&t));
        assert_eq!(t.lookup(0x7000_0001), Some(5));
        map.remove(0x7000_0000, 28);
        t.update(&map, 0x7000_0000, 28);
        assert_eq!(t.lookup(0x7000_0001), None);
        map.insert(0x7100_0000, 16, 253).unwrap();
        t.update(&map, 0x7100_0000, 16);
        assert!(is_byte(&t), "253 is stored as 254, below the node mark");
        assert_eq!(t.lookup(0x7100_0042), Some(253));
        map.insert(0x7100_0000, 16, 254).unwrap();
        t.update(&map, 0x7100_0000, 16);
        assert!(is_narrow(&t));
        let table = map.to_vec();
        for k in (0..u32::MAX).step_by(65_521).chain([
            0x7000_0001,
            0x7100_0042,
            0x0000_1005,
            0x0000_3005,
        ]) {
            assert_eq!(t.lookup(k), naive(&table, k), "key {k:#x}");
        }
    }

    #[test]
    fn a_full_ipv4_table_keeps_its_direct_array_in_16_bits() {
        let prefixes = full_v4_table(10_000);
        let t = Lpm4::build(prefixes.clone());
        assert!(is_narrow(&t));
        assert!(
            t.memory_bytes() < 40 << 20,
            "{} bytes: the 24-bit array should take 32 MiB",
            t.memory_bytes()
        );
        for p in prefixes.iter().step_by(97) {
            assert_eq!(t.lookup(p.0 | 3), naive(&prefixes, p.0 | 3));
        }
    }

    #[test]
    fn values_or_roots_beyond_16_bits_make_the_direct_array_wide() {
        // A value above 2^15 - 2.
        let t = Lpm4::build_with_direct_bits(vec![(0x0a00_0000, 8, 40_000)], 16);
        assert!(!is_narrow(&t));
        assert_eq!(t.lookup(0x0a01_0203), Some(40_000));
        // More than 2^15 direct slots with prefixes below them.
        let deep: Vec<Prefix<u32>> = (0..40_000u32).map(|i| (i << 16, 20, 1)).collect();
        let t = Lpm4::build_with_direct_bits(deep.clone(), 16);
        assert!(!is_narrow(&t));
        assert_eq!(t.lookup(39_999 << 16), Some(1));
        assert_eq!(t.lookup((39_999 << 16) | 0x1000), None);
        // Fewer: narrow.
        let t = Lpm4::build_with_direct_bits(deep[..30_000].to_vec(), 16);
        assert!(is_narrow(&t));
        assert_eq!(t.lookup(29_999 << 16), Some(1));
    }

    #[test]
    fn a_slot_going_from_node_to_leaf_and_back_reuses_its_root() {
        // Values a byte cannot hold, so that the array is narrow.
        let mut map = PrefixMap::<u32>::default();
        map.insert(0x0a00_0000, 8, 1).unwrap();
        map.insert(0x0b00_0000, 8, 300).unwrap();
        let mut t = Lpm4::build_with_direct_bits(map.to_vec(), 16);
        for _ in 0..40_000 {
            map.insert(0x0a01_0100, 24, 2).unwrap();
            t.update(&map, 0x0a01_0100, 24);
            map.remove(0x0a01_0100, 24);
            t.update(&map, 0x0a01_0100, 24);
        }
        assert!(is_narrow(&t), "40,000 flaps stay within the 2^15 roots");
        map.insert(0x0a01_0100, 24, 2).unwrap();
        t.update(&map, 0x0a01_0100, 24);
        assert_eq!(t.lookup(0x0a01_0105), Some(2));
        assert_eq!(t.lookup(0x0a01_0205), Some(1));
    }

    #[test]
    fn an_update_that_does_not_fit_16_bits_widens_the_array_and_loses_nothing() {
        let mut map = PrefixMap::<u32>::default();
        for i in 0..2_000u32 {
            map.insert(i << 12, if i % 3 == 0 { 26 } else { 20 }, i)
                .unwrap();
        }
        // A direct leaf whose value a byte cannot hold.
        map.insert(0x6000_0000, 8, 1_000).unwrap();
        let mut t = Lpm4::build_with_direct_bits(map.to_vec(), 16);
        assert!(is_narrow(&t));
        // A new root below a slot, then a value too large for 15 bits.
        map.insert(0x7000_0000, 28, 5).unwrap();
        t.update(&map, 0x7000_0000, 28);
        assert!(is_narrow(&t));
        map.insert(0x7100_0000, 16, 50_000).unwrap();
        t.update(&map, 0x7100_0000, 16);
        assert!(!is_narrow(&t));
        let table = map.to_vec();
        for k in (0..u32::MAX)
            .step_by(65_521)
            .chain([0x7000_0001, 0x7100_0042])
        {
            assert_eq!(t.lookup(k), naive(&table, k), "key {k:#x}");
        }
    }

    #[test]
    fn empty_table_misses() {
        let t = Lpm4::build(Vec::new());
        assert_eq!(t.lookup(0x0a000001), None);
        assert!(t.is_empty());
        assert_eq!(Lpm6::empty().lookup(1), None);
    }

    #[test]
    fn nested_ipv4() {
        let t = Lpm4::build(vec![
            (0, 0, 1),
            (0x0a00_0000, 8, 2),
            (0x0a01_0000, 16, 3),
            (0x0a01_0200, 24, 4),
            (0x0a01_0280, 25, 5),
            (0x0a01_0281, 32, 6),
        ]);
        assert_eq!(t.lookup(0x0b00_0000), Some(1));
        assert_eq!(t.lookup(0x0a02_0000), Some(2));
        assert_eq!(t.lookup(0x0a01_0300), Some(3));
        assert_eq!(t.lookup(0x0a01_0201), Some(4));
        assert_eq!(t.lookup(0x0a01_02ff), Some(5));
        assert_eq!(t.lookup(0x0a01_0281), Some(6));
        assert_eq!(t.lookup(0x0a01_0282), Some(5));
    }

    #[test]
    fn large_table_uses_wide_direct_array() {
        let prefixes: Vec<Prefix<u32>> = (0..5000u32).map(|i| (i << 12, 20, i)).collect();
        let t = Lpm4::build(prefixes);
        assert_eq!(t.direct_bits, DIRECT_BITS_LARGE);
        for i in 0..5000u32 {
            assert_eq!(t.lookup((i << 12) | 0x7ff), Some(i));
        }
        assert_eq!(t.lookup(5000 << 12), None);
    }

    #[test]
    fn ipv6_host_routes_at_the_last_level() {
        let a: u128 = 0x2001_0db8_0000_0000_0000_0000_0000_0000;
        let t = Lpm6::build(vec![
            (a, 32, 1),
            (a | 1, 128, 2),
            (a | 0xff, 128, 3),
            (a | 0xf0, 124, 4),
            (u128::MAX, 128, 5),
        ]);
        assert_eq!(t.lookup(a), Some(1));
        assert_eq!(t.lookup(a | 1), Some(2));
        assert_eq!(t.lookup(a | 2), Some(1));
        assert_eq!(t.lookup(a | 0xff), Some(3));
        assert_eq!(t.lookup(a | 0xfe), Some(4));
        assert_eq!(t.lookup(u128::MAX), Some(5));
        assert_eq!(t.lookup(u128::MAX - 1), None);
    }

    fn v4_prefix() -> impl Strategy<Value = Prefix<u32>> {
        let len = prop_oneof![
            Just(0u8),
            0u8..=32,
            16u8..=24,
            Just(24u8),
            Just(32u8),
            25u8..=32
        ];
        // Eight regions, each with addresses crowded towards its start, so that
        // prefixes share leading bits and nest.
        let addr = (0u32..8, any::<u32>(), 3u32..32).prop_map(|(hi, lo, s)| (hi << 29) | (lo >> s));
        (addr, len, 0u32..1000)
    }

    /// Half the time with values that fit a byte direct array.
    fn few_values<T>(v: Vec<(T, u8, u32)>, few: bool) -> Vec<(T, u8, u32)> {
        v.into_iter()
            .map(|(a, l, x)| (a, l, if few { x % 250 } else { x }))
            .collect()
    }

    fn v4_table() -> impl Strategy<Value = Vec<Prefix<u32>>> {
        (
            proptest::collection::vec(v4_prefix(), 0..300),
            any::<bool>(),
        )
            .prop_map(|(t, few)| distinct(few_values(t, few)))
    }

    /// Tables big enough for the wide direct array.
    fn big_v4_table() -> impl Strategy<Value = Vec<Prefix<u32>>> {
        let len = prop_oneof![8u8..=32, Just(24u8), 16u8..=24];
        let addr = (0u32..4, any::<u32>(), 0u32..8).prop_map(|(hi, lo, s)| (hi << 30) | (lo >> s));
        proptest::collection::vec((addr, len, 0u32..100_000), 2100..2600).prop_map(distinct)
    }

    fn big_v6_table() -> impl Strategy<Value = Vec<Prefix<u128>>> {
        let len = prop_oneof![Just(0u8), 16u8..=64, 28u8..=48];
        let addr = (0u128..4, any::<u128>(), 0u32..24)
            .prop_map(|(hi, lo, s)| (0x2000u128 << 112) | (hi << 108) | (lo >> (20 + s)));
        proptest::collection::vec((addr, len, 0u32..100_000), 2100..2600).prop_map(distinct)
    }

    fn v6_prefix() -> impl Strategy<Value = Prefix<u128>> {
        let len = prop_oneof![
            Just(0u8),
            0u8..=128,
            32u8..=48,
            Just(64u8),
            Just(128u8),
            120u8..=128
        ];
        let addr =
            (0u128..4, any::<u128>(), 2u32..128).prop_map(|(hi, lo, s)| (hi << 126) | (lo >> s));
        (addr, len, 0u32..1000)
    }

    fn v6_table() -> impl Strategy<Value = Vec<Prefix<u128>>> {
        (
            proptest::collection::vec(v6_prefix(), 0..300),
            any::<bool>(),
        )
            .prop_map(|(t, few)| distinct(few_values(t, few)))
    }

    /// Random keys plus, for every prefix, its first and last address, an address
    /// inside it with random host bits and the address just past its boundary bit.
    macro_rules! probes {
        ($t:ty, $table:expr, $random:expr) => {{
            let mut keys: Vec<$t> = $random.clone();
            for (i, &(addr, len, _)) in $table.iter().enumerate() {
                let host: $t = if u32::from(len) >= <$t>::BITS {
                    0
                } else {
                    <$t>::MAX >> len
                };
                let r = $random[i % $random.len()];
                keys.extend([addr, addr | host, addr | (r & host)]);
                if len > 0 {
                    keys.push(addr ^ (1 << (<$t>::BITS - u32::from(len))));
                }
            }
            keys
        }};
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn ipv4_matches_naive(
            table in v4_table(),
            random in proptest::collection::vec(any::<u32>(), 64),
            bits in prop_oneof![Just(None), (1u32..=24).prop_map(Some)],
        ) {
            let t = match bits {
                None => Lpm4::build(table.clone()),
                Some(b) => Lpm4::build_with_direct_bits(table.clone(), b),
            };
            prop_assert_eq!(t.len(), table.len());
            let keys = probes!(u32, table, random);
            for &k in &keys {
                prop_assert_eq!(t.lookup(k), naive(&table, k), "key {:#010x}", k);
            }
            let mut bulk = vec![Some(0); keys.len()];
            t.lookup_bulk(&keys, &mut bulk);
            for (k, b) in keys.iter().zip(&bulk) {
                prop_assert_eq!(*b, naive(&table, *k), "bulk, key {:#010x}", k);
            }
        }

        #[test]
        fn ipv6_matches_naive(
            table in v6_table(),
            random in proptest::collection::vec(any::<u128>(), 64),
            bits in prop_oneof![Just(None), (1u32..=24).prop_map(Some)],
        ) {
            let t = match bits {
                None => Lpm6::build(table.clone()),
                Some(b) => Lpm6::build_with_direct_bits(table.clone(), b),
            };
            let keys = probes!(u128, table, random);
            for &k in &keys {
                prop_assert_eq!(t.lookup(k), naive(&table, k), "key {:#034x}", k);
            }
            let mut bulk = vec![Some(0); keys.len()];
            t.lookup_bulk(&keys, &mut bulk);
            for (k, b) in keys.iter().zip(&bulk) {
                prop_assert_eq!(*b, naive(&table, *k), "bulk, key {:#034x}", k);
            }
        }
    }

    /// Random changes: removals and new values for prefixes of the initial
    /// table, and new prefixes.
    fn apply_ops<K: Key>(
        map: &mut PrefixMap<K>,
        t: &mut Lpm<K>,
        initial: &[Prefix<K>],
        ops: &[(u8, prop::sample::Index, Prefix<K>)],
    ) {
        for &(kind, idx, fresh) in ops {
            let (addr, len, val) = match (kind % 3, initial.is_empty()) {
                (0, false) => {
                    let p = initial[idx.index(initial.len())];
                    map.remove(p.0, p.1);
                    (p.0, p.1, None)
                }
                (1, false) => {
                    let p = initial[idx.index(initial.len())];
                    (p.0, p.1, Some(fresh.2))
                }
                _ => (fresh.0, fresh.1, Some(fresh.2)),
            };
            if let Some(v) = val {
                map.insert(addr, len, v).unwrap();
            }
            t.update(map, addr, len);
        }
    }

    /// Changes whose values, half the time, still fit a byte direct array.
    fn ops<K: Key>(
        prefix: impl Strategy<Value = Prefix<K>>,
    ) -> impl Strategy<Value = Vec<(u8, prop::sample::Index, Prefix<K>)>> {
        (
            proptest::collection::vec((any::<u8>(), any::<prop::sample::Index>(), prefix), 0..120),
            any::<bool>(),
        )
            .prop_map(|(ops, few)| {
                ops.into_iter()
                    .map(|(kind, i, (a, l, x))| (kind, i, (a, l, if few { x % 250 } else { x })))
                    .collect()
            })
    }

    fn v4_ops() -> impl Strategy<Value = Vec<(u8, prop::sample::Index, Prefix<u32>)>> {
        ops(v4_prefix())
    }

    fn v6_ops() -> impl Strategy<Value = Vec<(u8, prop::sample::Index, Prefix<u128>)>> {
        ops(v6_prefix())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(96))]

        #[test]
        fn incremental_ipv4_matches_naive(
            initial in v4_table(),
            ops in v4_ops(),
            random in proptest::collection::vec(any::<u32>(), 64),
            // Up to 16 bits keeps a debug-build run short; the 24-bit layout has
            // its own test below.
            bits in 1u32..=16,
        ) {
            let mut map = PrefixMap::default();
            for p in &initial {
                map.insert(p.0, p.1, p.2).unwrap();
            }
            let mut t = Lpm4::build_with_direct_bits(map.to_vec(), bits);
            apply_ops(&mut map, &mut t, &initial, &ops);
            let table = map.to_vec();
            prop_assert_eq!(t.len(), table.len());
            let mut keys = probes!(u32, table, random);
            keys.extend(probes!(u32, initial, random));
            for &k in &keys {
                prop_assert_eq!(t.lookup(k), naive(&table, k), "key {:#010x}", k);
            }
            let mut bulk = vec![Some(0); keys.len()];
            t.lookup_bulk(&keys, &mut bulk);
            for (k, b) in keys.iter().zip(&bulk) {
                prop_assert_eq!(*b, naive(&table, *k), "bulk, key {:#010x}", k);
            }
            let rebuilt = Lpm4::from_map(&map);
            for k in probes!(u32, table, random) {
                prop_assert_eq!(rebuilt.lookup(k), t.lookup(k));
            }
        }

        #[test]
        fn incremental_ipv6_matches_naive(
            initial in v6_table(),
            ops in v6_ops(),
            random in proptest::collection::vec(any::<u128>(), 64),
            bits in 1u32..=16,
        ) {
            let mut map = PrefixMap::default();
            for p in &initial {
                map.insert(p.0, p.1, p.2).unwrap();
            }
            let mut t = Lpm6::build_with_direct_bits(map.to_vec(), bits);
            apply_ops(&mut map, &mut t, &initial, &ops);
            let table = map.to_vec();
            let mut keys = probes!(u128, table, random);
            keys.extend(probes!(u128, initial, random));
            for k in keys {
                prop_assert_eq!(t.lookup(k), naive(&table, k), "key {:#034x}", k);
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// As the dataplane's writer does for a copy of the table that missed a
        /// batch: several prefixes change in the map first, then the table is
        /// patched for each of them against the final map.
        #[test]
        fn patching_after_several_map_changes_matches_naive(
            initial in v4_table(),
            ops in v4_ops(),
            random in proptest::collection::vec(any::<u32>(), 64),
            bits in 1u32..=16,
        ) {
            let mut map = PrefixMap::default();
            for p in &initial {
                map.insert(p.0, p.1, p.2).unwrap();
            }
            let mut t = Lpm4::build_with_direct_bits(map.to_vec(), bits);
            // Apply every change to the map with a throwaway table, then patch
            // the real one for each changed prefix.
            let mut scratch = Lpm4::build_with_direct_bits(Vec::new(), bits);
            apply_ops(&mut map, &mut scratch, &initial, &ops);
            for &(kind, idx, fresh) in &ops {
                let (addr, len) = match (kind % 3, initial.is_empty()) {
                    (0 | 1, false) => {
                        let p = initial[idx.index(initial.len())];
                        (p.0, p.1)
                    }
                    _ => (fresh.0, fresh.1),
                };
                t.update(&map, addr, len);
            }
            let table = map.to_vec();
            let mut keys = probes!(u32, table, random);
            keys.extend(probes!(u32, initial, random));
            for k in keys {
                prop_assert_eq!(t.lookup(k), naive(&table, k), "key {:#010x}", k);
            }
        }
    }

    #[test]
    fn removing_the_last_deep_prefix_of_a_slot_frees_its_subtree() {
        let mut map = PrefixMap::default();
        map.insert(0x0100_0000u32, 16, 1).unwrap();
        map.insert(0x0100_0081, 32, 2).unwrap();
        let mut t = Lpm4::build_with_direct_bits(map.to_vec(), 24);
        assert!(t.node_count() > 1, "a chain of nodes down to the /32");
        map.remove(0x0100_0081, 32);
        t.update(&map, 0x0100_0081, 32);
        assert_eq!(t.lookup(0x0100_0081), Some(1));
        let (nodes, garbage) = (t.node_count(), t.garbage_nodes);
        assert_eq!(garbage, nodes, "every node of the slot is garbage now");
    }

    #[test]
    fn incremental_updates_of_a_full_ipv4_table() {
        // A table large enough for the 24-bit direct array, then nested updates
        // above, at and below the direct depth, and removals back to empty.
        let mut map = PrefixMap::default();
        for i in 0..FULL_V4_TABLE as u32 {
            map.insert(0x0100_0000 + (i << 8), 24, i).unwrap();
        }
        let mut t = Lpm4::from_map(&map);
        assert_eq!(t.direct_bits(), DIRECT_BITS_FULL_V4);
        let steps: [(u32, u8, Option<u32>); 9] = [
            (0x0100_0000, 16, Some(7)),
            (0x0100_0080, 25, Some(8)),
            (0x0100_0081, 32, Some(9)),
            (0x0100_0000, 24, None),
            (0, 0, Some(10)),
            (0x0100_0080, 25, None),
            (0x0100_0000, 16, None),
            (0x0100_0081, 32, Some(11)),
            (0x0100_0081, 32, None),
        ];
        for (addr, len, v) in steps {
            match v {
                Some(v) => {
                    map.insert(addr, len, v).unwrap();
                }
                None => {
                    map.remove(addr, len);
                }
            }
            t.update(&map, addr, len);
            let table = map.to_vec();
            for k in [
                0x0100_0000u32,
                0x0100_0081,
                0x0100_0082,
                0x0100_00ff,
                0x0100_0100,
                0x0000_0001,
                0x0101_0000,
            ] {
                assert_eq!(
                    t.lookup(k),
                    naive(&table, k),
                    "key {k:#010x} after {addr:#x}/{len}"
                );
            }
        }
        for i in 0..FULL_V4_TABLE as u32 {
            let a = 0x0100_0000 + (i << 8);
            map.remove(a, 24);
            t.update(&map, a, 24);
        }
        map.remove(0, 0);
        t.update(&map, 0, 0);
        assert!(t.is_empty());
        assert_eq!(t.lookup(0x0100_0105), None);
        assert!(
            t.needs_compaction(),
            "an emptied full table asks for a smaller layout"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(6))]

        #[test]
        fn big_ipv4_matches_naive(table in big_v4_table(), random in proptest::collection::vec(any::<u32>(), 256)) {
            let t = Lpm4::build(table.clone());
            prop_assume!(t.len() >= LARGE_TABLE);
            prop_assert_eq!(t.direct_bits, DIRECT_BITS_LARGE);
            for k in probes!(u32, table, random) {
                prop_assert_eq!(t.lookup(k), naive(&table, k), "key {:#010x}", k);
            }
        }

        #[test]
        fn big_ipv6_matches_naive(table in big_v6_table(), random in proptest::collection::vec(any::<u128>(), 256)) {
            let t = Lpm6::build(table.clone());
            let keys = probes!(u128, table, random);
            for &k in &keys {
                prop_assert_eq!(t.lookup(k), naive(&table, k), "key {:#034x}", k);
            }
            let mut bulk = vec![Some(0); keys.len()];
            t.lookup_bulk(&keys, &mut bulk);
            for (k, b) in keys.iter().zip(&bulk) {
                prop_assert_eq!(*b, naive(&table, *k), "bulk, key {:#034x}", k);
            }
        }
    }
}
