//! Longest-prefix match over IPv4 (`u32`) and IPv6 (`u128`) keys.
//!
//! The structure is a compressed multibit trie in the style of Poptrie (Asai and
//! Ohara, SIGCOMM 2015):
//!
//! * a *direct* array indexed by the top `s` bits of the key. An entry is either a
//!   leaf (bit 31 set, the value in the low bits) or the index of a node. `s` grows
//!   with the table: 8 bits (1 KiB) for small tables, 18 bits (1 MiB) from 2,048
//!   prefixes and, for IPv4 tables of at least 131,072 prefixes (full Internet
//!   tables), 24 bits (64 MiB, DIR-24-8 style) so that the dominant /24 and shorter
//!   prefixes resolve with a single memory access;
//! * *nodes* with a stride of 6 bits. A node has two 64-bit vectors: `vector` marks
//!   the slots that continue in a child node, `leafvec` marks the slots where a new
//!   run of equal leaf values starts. The children of a node are stored contiguously
//!   from `base1`, its (run-compressed) leaves contiguously from `base0`, so the
//!   position of a slot's child or leaf is a popcount of the vector below it.
//!
//! A lookup is one direct-array read plus, for keys under prefixes longer than `s`,
//! one node per 6 bits and a final leaf read. Leaves are run-length compressed and
//! nodes are 24 bytes, so the part below the direct array stays small (about 14 MiB
//! for a 900k-prefix IPv4 table with `s` = 18).
//!
//! Tables are immutable: [`Lpm::build`] bulk-loads a whole prefix list (sorting it
//! once, then building the trie top-down in a single recursive pass). Updates are
//! made by rebuilding, which is what the dataplane does with every new snapshot.

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
/// Direct-array bits for small tables (1 KiB of direct array).
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

/// An immutable longest-prefix-match table from prefixes of `K` to `u32` values.
#[derive(Clone)]
pub struct Lpm<K> {
    direct_bits: u32,
    /// Leaf (`LEAF | stored`) or node index, per top `direct_bits` bits. Empty when
    /// the table has no prefix. A stored value of 0 means "no route", `v + 1` means
    /// value `v`; the same encoding is used in `leaves`.
    direct: Vec<u32>,
    nodes: Vec<Node>,
    leaves: Vec<u32>,
    prefixes: usize,
    _key: PhantomData<K>,
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
            direct: Vec::new(),
            nodes: Vec::new(),
            leaves: Vec::new(),
            prefixes: 0,
            _key: PhantomData,
        }
    }

    /// Bulk-loads a table, choosing the direct-array size from the number of
    /// prefixes and the key width. Prefixes longer than the key and values above
    /// [`MAX_VALUE`] are ignored; of two entries with the same prefix, one wins
    /// (which one is unspecified).
    pub fn build(prefixes: Vec<Prefix<K>>) -> Self {
        let bits = if K::BITS == 32 && prefixes.len() >= FULL_V4_TABLE {
            DIRECT_BITS_FULL_V4
        } else if prefixes.len() >= LARGE_TABLE {
            DIRECT_BITS_LARGE
        } else {
            DIRECT_BITS_SMALL
        };
        Self::build_with_direct_bits(prefixes, bits)
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
        let mut direct = vec![LEAF; 1 << direct_bits];
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
            direct,
            nodes: b.nodes,
            leaves: b.leaves,
            prefixes: prefixes.len(),
            _key: PhantomData,
        }
    }

    /// The value of the longest prefix containing `key`, if any.
    #[inline]
    pub fn lookup(&self, key: K) -> Option<u32> {
        let d = *self.direct.get(key.bits(0, self.direct_bits))?;
        let stored = if d & LEAF != 0 {
            d & !LEAF
        } else {
            let mut node = self.nodes.get(d as usize)?;
            let mut off = self.direct_bits;
            loop {
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
            }
        };
        stored.checked_sub(1)
    }

    /// Number of distinct prefixes loaded.
    pub fn len(&self) -> usize {
        self.prefixes
    }

    pub fn is_empty(&self) -> bool {
        self.prefixes == 0
    }

    /// Bytes used by the table's arrays.
    pub fn memory_bytes(&self) -> usize {
        self.direct.len() * std::mem::size_of::<u32>()
            + self.nodes.len() * std::mem::size_of::<Node>()
            + self.leaves.len() * std::mem::size_of::<u32>()
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

    fn v4_table() -> impl Strategy<Value = Vec<Prefix<u32>>> {
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
        proptest::collection::vec((addr, len, 0u32..1000), 0..300).prop_map(distinct)
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

    fn v6_table() -> impl Strategy<Value = Vec<Prefix<u128>>> {
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
        proptest::collection::vec((addr, len, 0u32..1000), 0..300).prop_map(distinct)
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
            for k in probes!(u32, table, random) {
                prop_assert_eq!(t.lookup(k), naive(&table, k), "key {:#010x}", k);
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
            for k in probes!(u128, table, random) {
                prop_assert_eq!(t.lookup(k), naive(&table, k), "key {:#034x}", k);
            }
        }
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
            for k in probes!(u128, table, random) {
                prop_assert_eq!(t.lookup(k), naive(&table, k), "key {:#034x}", k);
            }
        }
    }
}
