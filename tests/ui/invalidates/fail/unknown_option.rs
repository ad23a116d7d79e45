use cache_core::invalidates;

#[invalidates(keyy = "user:{id}")]
fn misspelt(id: u64) {
    let _ = id;
}

#[invalidates(tag = ["user:{id}"])]
fn singular_tag(id: u64) {
    let _ = id;
}

#[invalidates(expires = true)]
fn not_an_option() {}

#[invalidates("user:{id}")]
fn bare_literal(id: u64) {
    let _ = id;
}

#[invalidates(get_user)]
fn no_arguments(id: u64) {
    let _ = id;
}

fn main() {}
