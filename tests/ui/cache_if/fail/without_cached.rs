use cache_core::cache_if;

#[cache_if(id > 0)]
fn not_cached(id: u64) -> u64 {
    id
}

#[cache_if(id > 0)]
struct NotAFunction;

fn main() {
    not_cached(1);
}
