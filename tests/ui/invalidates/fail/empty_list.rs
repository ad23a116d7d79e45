use cache_core::invalidates;

// Alone, the empty list used to be reported as "nothing to invalidate" on the whole attribute.
#[invalidates(keys = [])]
fn no_keys(id: u64) -> u64 {
    id
}

// Beside other targets, it silently removed nothing.
#[invalidates(tags = ["user:{id}"], patterns = [])]
fn no_patterns(id: u64) -> u64 {
    id
}

#[invalidates(key = "user:{id}", tags = [])]
fn no_tags(id: u64) -> u64 {
    id
}

fn main() {}
