use cache_core::invalidates;

struct Filter {
    name: String,
}

#[invalidates(pattern = "search:{filter}:*")]
fn forget(filter: Filter) {
    let _ = filter.name;
}

fn main() {}
