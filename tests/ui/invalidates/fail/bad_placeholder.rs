use cache_core::invalidates;

#[invalidates(key = "user:{user_id}")]
fn no_such_argument(id: u64) {
    let _ = id;
}

#[invalidates(pattern = "search:{q")]
fn unclosed(q: &str) {
    let _ = q;
}

#[invalidates(tags = ["user:{id:sha}"])]
fn unknown_formatter(id: u64) {
    let _ = id;
}

#[invalidates(keys = ["user:{self.id}"])]
fn no_self(id: u64) {
    let _ = id;
}

fn main() {}
