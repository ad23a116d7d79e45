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

// Relative paths, through a module's own `use`: the expansion imports the path at the top of
// each body it writes, where it must mean what it means beside the function.
mod via_use {
    use renamed as cc;

    #[renamed::cached(crate = "cc")]
    pub fn aliased(n: u32) -> u32 {
        n
    }

    #[renamed::cached(crate = "self::cc", key = "s:{n}")]
    pub fn via_self(n: u32) -> u32 {
        n
    }

    pub mod deeper {
        #[renamed::cached(crate = "super::cc")]
        pub fn via_super(n: u32) -> u32 {
            n
        }
    }

    pub struct Repo;

    impl Repo {
        #[renamed::cached(crate = "cc", key = "find:{n}")]
        pub fn find(&self, n: u32) -> u32 {
            n
        }
    }

    #[renamed::invalidates(crate = "super::renamed", aliased(n))]
    pub fn forget(n: u32) {
        let _ = n;
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    assert_eq!(rt.block_on(renamed_async(1)), 1);
    assert_eq!(renamed_sync(2), Some(2));
    assert_eq!(nested::deep(3), Some(3));
    assert_eq!(via_use::aliased(4), 4);
    assert_eq!(via_use::via_self(5), 5);
    assert_eq!(via_use::deeper::via_super(6), 6);
    assert_eq!(via_use::Repo.find(7), 7);
    via_use::forget(4);
}
