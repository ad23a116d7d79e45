//! Shared fixtures of the benchmarks: the value every cache returns, the same for all peers.

/// A value of about 200 bytes: 168 inline, plus a 48-byte name on the heap.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Profile {
    /// The id it was built for.
    pub id: u64,
    /// A 48-byte name.
    pub name: String,
    /// A score.
    pub score: f64,
    /// Padding to the size of a typical row.
    pub flags: [u64; 16],
}

impl Profile {
    /// The profile of `id`, as a "database" would build it.
    pub fn load(id: u64) -> Profile {
        Profile {
            id,
            name: format!("{id:0>48}"),
            score: id as f64 * 0.5,
            flags: [id; 16],
        }
    }
}

/// How many distinct keys the hit benchmarks cycle through (all preloaded).
pub const KEYS: u64 = 1_000;
