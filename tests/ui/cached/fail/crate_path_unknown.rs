// A `crate` path that names nothing: one error per attribute, at the path (and one for the
// signature of the companion `#[cached]` writes for `#[invalidates]`).
#[cache_core::cached(crate = "::nope")]
fn load(id: u64) -> u64 {
    id
}

#[cache_core::invalidates(crate = "::nope", key = "load:{id}")]
fn store(id: u64) {
    let _ = id;
}

fn main() {
    let _ = load(1);
    store(1);
}
