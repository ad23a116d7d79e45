// A `HashSet` iterates in a different order in every process: hashed into a default key, equal
// sets would get different keys. An error, with what to use instead; a `HashMap` is fine (its
// entries are put in order when hashed).
use std::collections::{BTreeSet, HashMap, HashSet};

use cache_core::cached;

#[cached]
fn count(ids: HashSet<u64>) -> usize {
    ids.len()
}

#[cached]
fn nested(groups: Vec<std::collections::HashSet<String>>, limit: u32) -> usize {
    groups.len() + limit as usize
}

// Allowed: ordered, a map, skipped, or an explicit key.
#[cached]
fn ordered(ids: BTreeSet<u64>, counts: HashMap<String, u32>) -> usize {
    ids.len() + counts.len()
}

#[cached(skip(ids))]
fn skipped(ids: &HashSet<u64>, limit: u32) -> usize {
    ids.len().min(limit as usize)
}

#[cached(key = format!("count:{}", ids.len()))]
fn keyed(ids: HashSet<u64>) -> usize {
    ids.len()
}

fn main() {}
