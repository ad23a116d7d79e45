use cache_core::cached;

#[cached(skip(conn, verbose))]
fn skips(id: u64, connection: String) -> u64 {
    let _ = connection;
    id
}

fn main() {}
