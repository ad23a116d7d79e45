//! Entries are removed after the body succeeds; a body that never returns never succeeds.
use cache_core::invalidates;

#[invalidates(key = "user:{id}")]
fn shutdown(id: u64) -> ! {
    let _ = id;
    std::process::exit(0)
}

struct Server;

impl Server {
    #[invalidates(tags = ["user:{id}"])]
    fn serve(&self, id: u64) -> ! {
        let _ = id;
        loop {
            std::thread::park();
        }
    }
}

// Removed before the body runs, they are removed.
#[invalidates(key = "user:{id}", before = true)]
fn exit(id: u64) -> ! {
    let _ = id;
    std::process::exit(0)
}

fn main() {
    let _ = (shutdown as fn(u64) -> !, Server::serve as fn(&Server, u64) -> !, exit as fn(u64) -> !);
}
