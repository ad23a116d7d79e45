//! A second `#[cached]` on a function is a mistake, not a second cache around the first.
use cache_core::cached;

#[cached]
#[cached(ttl = 60)]
fn load(id: u64) -> u64 {
    id
}

struct Repo;

impl Repo {
    #[cached(cache = "repos")]
    #[cache_core::cached]
    fn get(&self, id: u64) -> u64 {
        id
    }
}

fn main() {
    let _ = (load(1), Repo.get(1));
}
