use cache_core::invalidates;

#[invalidates(cache = "users", all = "yes")]
fn all_string() {}

#[invalidates(key = "user:{id}", before = 1)]
fn before_number(id: u64) {
    let _ = id;
}

#[invalidates(tags = "user:{id}")]
fn tags_not_array(id: u64) {
    let _ = id;
}

#[invalidates(pattern = 5)]
fn pattern_number() {}

#[invalidates(cache = users, key = "k")]
fn cache_ident() {}

#[invalidates(keys = "user:{id}")]
fn keys_not_array(id: u64) {
    let _ = id;
}

#[invalidates(patterns = ["a:*", 5])]
fn patterns_element() {}

fn main() {}
