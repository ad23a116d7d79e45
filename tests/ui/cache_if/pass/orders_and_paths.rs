//! `#[cache_if]` above or below `#[cached]`, under any of the paths, adds no warnings.
#![deny(warnings)]

use cache_core::{cache_if, cached};

#[cached(key = "a:{id}")]
#[cache_if(id > 0)]
pub async fn below(id: i64) -> i64 {
    id
}

#[cache_if(id > 0, result = |v: &Vec<i64>| !v.is_empty())]
#[cached(key = "b:{id}")]
pub async fn above(id: i64) -> Vec<i64> {
    vec![id]
}

#[cache_core::cache_if(result = Option::is_some)]
#[::cache_core::cached]
pub fn qualified(id: u8) -> Option<u8> {
    Some(id)
}

#[cache_core::cached(key = "d:{id}")]
#[::cache_core::cache_if(id % 2 == 0,)]
pub fn trailing_comma(id: u8) -> Result<u8, String> {
    Ok(id)
}

#[cache_if(!name.is_empty())]
#[cached(ttl = 60, cache = "names", key = "n:{name}", tags = ["names"],)]
pub fn options_kept(name: &str) -> usize {
    name.len()
}

pub struct Service {
    pub enabled: bool,
}

impl Service {
    #[cached(key = "svc:{id}")]
    #[cache_if(self.enabled)]
    pub fn get(&self, id: u32) -> u32 {
        id
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        below(1).await;
        above(1).await;
    });
    qualified(1);
    trailing_comma(2).unwrap();
    options_kept("a");
    Service { enabled: true }.get(1);
}
