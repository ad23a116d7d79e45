//! `#[cached]` above `#[cache_if]` takes the attribute off the function; the `cache_if` import
//! still counts as used.
#![deny(warnings)]

use cache_core::{cache_if, cached};

#[cached(key = "user:{id}")]
#[cache_if(id > 0)]
pub fn get_user(id: u64) -> u64 {
    id
}

fn main() {
    get_user(1);
}
