use cache_core::invalidates;

#[invalidates]
fn nothing() {}

#[invalidates(before = true)]
fn only_timing() {}

fn main() {}
