//! The expansion adds no warnings of its own.
#![deny(warnings)]

use cache_core::cached;
use serde::Serialize;

#[derive(Clone, Serialize)]
pub struct Filter {
    pub name: String,
}

#[cached(ttl = "5m", cache = "filtered", tags = ["filter:{filter.name}", "all"])]
pub async fn filtered(filter: Filter, limit: usize) -> Vec<String> {
    vec![filter.name.clone(); limit]
}

#[cached(key = "{a}:{b}", cache_none = true)]
pub fn maybe(a: u32, b: u32) -> Option<u32> {
    a.checked_sub(b)
}

#[cached(skip(verbose))]
pub fn skipped(id: u64, verbose: bool) -> Result<u64, String> {
    if verbose {
        return Err("verbose".to_owned());
    }
    Ok(id)
}

#[cached(key = format!("expr:{}", id * 2))]
pub fn expr_key(id: u64) -> u64 {
    id
}

#[cached(key = id)]
pub async fn ident_key(id: u64) -> u64 {
    id
}

#[cached]
pub fn no_args() -> Vec<u8> {
    Vec::new()
}

#[cached(key = "{{literal}}:{x}", cache_none = false)]
pub async fn braces(x: u8) -> Option<u8> {
    Some(x)
}

pub struct Service;

impl Service {
    #[cached(key = "svc:{id}")]
    pub async fn get(&self, id: u32) -> Result<u32, std::io::Error> {
        Ok(id)
    }

    #[cached]
    pub fn with_self_type(&self) -> Option<Self> {
        Some(Service)
    }
}

impl Clone for Service {
    fn clone(&self) -> Self {
        Service
    }
}

#[cached]
pub async fn early(x: i32) -> Result<i32, String> {
    if x < 0 {
        return Err("negative".into());
    }
    let y: i32 = "1".parse().map_err(|_| String::new())?;
    Ok(x + y)
}

#[cached]
pub unsafe fn unsafe_fn(x: u32) -> u32 {
    x
}

#[cached]
pub fn inner_attributes(x: u32) -> u32 {
    #![allow(clippy::identity_op)]
    x + 0
}

// A named `crate` path is imported in each body the expansion writes: no warning either.
#[cached(crate = "::cache_core", key = "named:{a}")]
pub fn named_crate(a: u32) -> u32 {
    a
}

#[cache_core::invalidates(crate = "::cache_core", named_crate(a))]
pub fn forget_named(a: u32) {
    let _ = a;
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        filtered(Filter { name: "a".into() }, 2).await;
        ident_key(1).await;
        braces(1).await;
        Service.get(1).await.unwrap();
        early(1).await.unwrap();
    });
    maybe(1, 2);
    skipped(1, false).unwrap();
    expr_key(1);
    no_args();
    Service.with_self_type();
    // SAFETY: `unsafe_fn` has no preconditions; it is `unsafe` to test that `unsafe fn` works.
    unsafe { unsafe_fn(1) };
    inner_attributes(1);
}
