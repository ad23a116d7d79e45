//! The tag index: tag -> the entries carrying it, so invalidating a tag costs time in proportion
//! to its entries, not to the cache.

use std::collections::HashMap;
use std::sync::Arc;

use dashmap::DashMap;

use super::evictor::Slot;

#[derive(Default)]
pub(crate) struct TagIndex {
    /// tag -> (hash -> id of the entry that carries it).
    by_tag: DashMap<Arc<str>, HashMap<u64, u64>>,
}

impl TagIndex {
    pub(crate) fn add(&self, tags: &[Arc<str>], slot: Slot) {
        for tag in tags {
            self.by_tag
                .entry(tag.clone())
                .or_default()
                .insert(slot.hash, slot.id);
        }
    }

    /// Forgets `slot` under each tag, unless a newer entry under the same hash took its place.
    pub(crate) fn remove(&self, tags: &[Arc<str>], slot: Slot) {
        for tag in tags {
            if let Some(mut members) = self.by_tag.get_mut(tag)
                && members.get(&slot.hash) == Some(&slot.id)
            {
                members.remove(&slot.hash);
            }
            self.by_tag.remove_if(tag, |_, members| members.is_empty());
        }
    }

    /// Removes a tag and returns the entries that carried it.
    pub(crate) fn take(&self, tag: &str) -> Vec<Slot> {
        self.by_tag
            .remove(tag)
            .map(|(_, members)| {
                members
                    .into_iter()
                    .map(|(hash, id)| Slot { hash, id })
                    .collect()
            })
            .unwrap_or_default()
    }
}
