use cache_core::{cached, invalidates};

struct Repo;

impl Repo {
    // No visibility: `#[cached]` cannot tell this impl from `impl Trait for Repo`, where no
    // companion item may be added, so none is; `pub(self)` (or `pub(crate)`, ...) gives one.
    #[cached(key = "repo:{id}")]
    fn get(&self, id: u32) -> u32 {
        id
    }

    #[invalidates(Self::get(self, id))]
    fn set(&self, id: u32) {
        let _ = id;
    }
}

fn main() {}
