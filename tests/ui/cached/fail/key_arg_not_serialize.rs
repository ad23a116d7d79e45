use cache_core::cached;

struct Filter {
    name: String,
}

#[cached]
fn search(id: u64, filter: Filter) -> String {
    format!("{id}{}", filter.name)
}

fn main() {}
