use cache_core::cached;

struct Filter {
    name: String,
}

#[cached(key = "search:{filter}")]
fn search(filter: Filter) -> String {
    filter.name
}

fn main() {}
