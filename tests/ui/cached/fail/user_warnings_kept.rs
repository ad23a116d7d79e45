#![deny(warnings)]

use cache_core::cached;

// The user's own warnings are not hidden by the expansion.
#[cached]
fn unused_variable(x: u32) -> u32 {
    let unused = 5;
    x
}

#[cached]
async fn unused_mut(mut x: u32) -> u32 {
    x
}

fn main() {}
