//! A hash map split into shards, for the RIB's per-prefix tables.
//!
//! A single hash table holding a full table (a million prefixes) doubles in
//! one step, and for that moment holds the old table and the new one: half
//! again its size, all at once. Split into [`SHARDS`] tables chosen by the
//! key's hash, each shard doubles on its own, so the extra is a
//! [`SHARDS`]th of that. Lookups hash twice (shard, then slot in it).

use std::borrow::Borrow;
use std::hash::{BuildHasher, Hash};

/// Number of shards: a power of two.
pub const SHARDS: usize = 64;

type Shard<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// A hash map made of [`SHARDS`] hash maps (keys from peers: seeded hashes).
pub struct ShardedMap<K, V> {
    /// Picks a key's shard (seeded apart from the shards' own hashers).
    pick: foldhash::fast::RandomState,
    shards: Box<[Shard<K, V>]>,
}

impl<K, V> Default for ShardedMap<K, V> {
    fn default() -> Self {
        ShardedMap {
            pick: Default::default(),
            shards: (0..SHARDS).map(|_| Shard::default()).collect(),
        }
    }
}

impl<K: Hash + Eq, V> ShardedMap<K, V> {
    fn shard<Q: Hash + ?Sized>(&self, k: &Q) -> usize {
        // The top bits: foldhash mixes them best.
        (self.pick.hash_one(k) >> (64 - SHARDS.trailing_zeros())) as usize
    }

    pub fn get<Q>(&self, k: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.shards[self.shard(k)].get(k)
    }

    pub fn contains_key<Q>(&self, k: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.get(k).is_some()
    }

    /// Inserts, returning the value `k` had.
    pub fn insert(&mut self, k: K, v: V) -> Option<V> {
        let i = self.shard(&k);
        self.shards[i].insert(k, v)
    }

    pub fn remove<Q>(&mut self, k: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let i = self.shard(k);
        self.shards[i].remove(k)
    }

    pub fn len(&self) -> usize {
        self.shards.iter().map(Shard::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.shards.iter().all(Shard::is_empty)
    }

    pub fn iter(&self) -> Iter<'_, K, V> {
        self.shards.iter().flatten()
    }

    pub fn keys(&self) -> impl Iterator<Item = &K> {
        self.iter().map(|(k, _)| k)
    }

    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.iter().map(|(_, v)| v)
    }

    /// Empties the map (and gives the shards' memory back).
    pub fn clear(&mut self) {
        for s in self.shards.iter_mut() {
            *s = Shard::default();
        }
    }

    /// Keeps the entries `keep` says yes to.
    pub fn retain(&mut self, mut keep: impl FnMut(&K, &mut V) -> bool) {
        for s in self.shards.iter_mut() {
            s.retain(&mut keep);
        }
    }

    /// Empties the map at once (and gives the shards' memory back), handing
    /// out the entries it held.
    pub fn drain(&mut self) -> impl Iterator<Item = (K, V)> {
        let empty = (0..SHARDS).map(|_| Shard::default()).collect();
        std::mem::replace(&mut self.shards, empty)
            .into_vec()
            .into_iter()
            .flatten()
    }
}

impl<K: Hash + Eq, V> std::fmt::Debug for ShardedMap<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardedMap")
            .field("len", &self.len())
            .finish()
    }
}

/// Iterates over the entries of each shard in turn.
pub type Iter<'a, K, V> = std::iter::Flatten<std::slice::Iter<'a, Shard<K, V>>>;

impl<'a, K: Hash + Eq, V> IntoIterator for &'a ShardedMap<K, V> {
    type Item = (&'a K, &'a V);
    type IntoIter = Iter<'a, K, V>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    proptest! {
        /// Any sequence of inserts and removals leaves the same entries as a
        /// plain hash map.
        #[test]
        fn behaves_as_one_hash_map(ops in prop::collection::vec((any::<bool>(), 0u16..500, any::<u8>()), 0..2000)) {
            let mut m: ShardedMap<u16, u8> = ShardedMap::default();
            let mut reference = HashMap::new();
            for (insert, k, v) in ops {
                if insert {
                    prop_assert_eq!(m.insert(k, v), reference.insert(k, v));
                } else {
                    prop_assert_eq!(m.remove(&k), reference.remove(&k));
                }
                prop_assert_eq!(m.get(&k), reference.get(&k));
                prop_assert_eq!(m.contains_key(&k), reference.contains_key(&k));
            }
            prop_assert_eq!(m.len(), reference.len());
            prop_assert_eq!(m.is_empty(), reference.is_empty());
            let mut all: Vec<(u16, u8)> = m.iter().map(|(k, v)| (*k, *v)).collect();
            all.sort();
            let mut want: Vec<(u16, u8)> = reference.into_iter().collect();
            want.sort();
            prop_assert_eq!(&all, &want);
            let mut copy: ShardedMap<u16, u8> = ShardedMap::default();
            for (k, v) in m.iter() {
                copy.insert(*k, *v);
            }
            // A drain dropped half-way empties the map all the same.
            drop(copy.drain().take(1));
            prop_assert!(copy.is_empty());
            let mut drained: Vec<(u16, u8)> = m.drain().collect();
            drained.sort();
            prop_assert_eq!(drained, want);
            prop_assert!(m.is_empty());
        }

        #[test]
        fn retain_and_clear_act_on_every_shard(keys in prop::collection::hash_set(any::<u32>(), 0..300)) {
            let mut m: ShardedMap<u32, ()> = ShardedMap::default();
            for k in &keys {
                m.insert(*k, ());
            }
            m.retain(|k, _| k % 2 == 0);
            prop_assert_eq!(m.len(), keys.iter().filter(|k| *k % 2 == 0).count());
            prop_assert!(m.keys().all(|k| k % 2 == 0));
            m.clear();
            prop_assert!(m.is_empty());
        }
    }

    #[test]
    fn keys_spread_over_every_shard() {
        let mut m: ShardedMap<u32, ()> = ShardedMap::default();
        for k in 0..10_000 {
            m.insert(k, ());
        }
        assert!(
            m.shards.iter().all(|s| s.len() > 50),
            "{:?}",
            m.shards.iter().map(Shard::len).collect::<Vec<_>>()
        );
    }
}
