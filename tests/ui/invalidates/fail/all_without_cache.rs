use cache_core::invalidates;

#[invalidates(all = true)]
fn clear_everything() {}

fn main() {}
