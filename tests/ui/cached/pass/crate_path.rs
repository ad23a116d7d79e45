// `crate = "..."` for a crate that reaches cache-core under another name.
extern crate cache_core as renamed;

use renamed::cached;

#[cached(crate = "renamed", key = "n:{n}")]
async fn renamed_async(n: u32) -> u32 {
    n
}

#[cached(crate = "::renamed")]
fn renamed_sync(n: u32) -> Option<u32> {
    Some(n)
}

mod nested {
    #[renamed::cached(crate = "renamed", cache_none = true)]
    pub fn deep(n: u32) -> Option<u32> {
        Some(n)
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    assert_eq!(rt.block_on(renamed_async(1)), 1);
    assert_eq!(renamed_sync(2), Some(2));
    assert_eq!(nested::deep(3), Some(3));
}
