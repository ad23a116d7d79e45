use std::pin::Pin;
use std::sync::Arc;

use cache_core::cached;

struct Repo {
    id: u64,
}

impl Repo {
    // A typed receiver that is a reference borrows `self` as much as `&self` does.
    #[cached(key = "a:{self.id}", stale = 600)]
    pub async fn by_ref(self: &Self) -> u64 {
        self.id
    }

    #[cached(key = "b:{self.id}", refresh_ahead)]
    pub fn by_arc_ref(self: &Arc<Self>) -> u64 {
        self.id
    }

    #[cached(key = "c:{self.id}", soft_timeout = "100ms")]
    pub async fn pinned(self: Pin<&mut Self>) -> u64 {
        self.id
    }

    // Owned receivers are fine.
    #[cached(key = "d:{self.id}", stale = 600)]
    pub async fn owned(self: Arc<Self>) -> u64 {
        self.id
    }
}

fn main() {
    let _ = Repo { id: 1 };
}
