use cache_core::cached;

#[cached]
#[derive(Clone)]
struct User {
    id: u64,
}

trait Repo {
    #[cached]
    fn load(&self, id: u64) -> u64;
}

fn main() {
    // The item is kept: this still compiles.
    let _ = User { id: 1 }.clone().id;
}
