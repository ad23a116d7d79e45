use cache_core::cached;

#[cached(key = "user:{id}", skip(verbose))]
fn skip_and_key(id: u64, verbose: bool) -> u64 {
    let _ = verbose;
    id
}

fn main() {}
