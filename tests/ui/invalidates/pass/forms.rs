//! Every form of `#[invalidates]`, on async and sync functions and methods, adds no warnings.
#![deny(warnings)]

use cache_core::{cached, invalidates};

pub mod users {
    use cache_core::cached;

    #[derive(Clone, serde::Serialize)]
    pub struct User {
        pub id: u64,
    }

    #[cached(cache = "users", key = "user:{id}")]
    pub async fn get_user(id: u64) -> Result<User, String> {
        Ok(User { id })
    }

    #[cached]
    pub fn by_org<T: Default + Clone + Send + Sync + 'static + serde::Serialize>(org: &str, extra: impl serde::Serialize) -> Vec<T> {
        let _ = (org, serde_json_like(&extra));
        Vec::new()
    }

    fn serde_json_like<T: serde::Serialize>(_: &T) -> usize {
        0
    }
}

pub struct Path<T>(pub T);

#[cached(key = "path:{id}")]
pub fn by_path(Path(id): Path<u64>) -> u64 {
    id
}

#[invalidates(cache = "users", key = "user:{id}")]
pub async fn by_key(id: u64) -> Result<(), String> {
    let _ = id;
    Ok(())
}

#[invalidates(cache = "users", keys = ["user:{id}", "user:{id}:profile"], key = format!("raw-{id}"))]
pub fn by_keys(id: u64) {
    let _ = id;
}

#[invalidates(tags = ["user:{id}", "users"], pattern = "search:{name:lower}:*", patterns = ["a:{id}:*", "b:{name:hash}"])]
pub async fn by_tags_and_patterns(id: u64, name: &str) -> Option<u64> {
    let _ = name;
    Some(id)
}

#[invalidates(cache = "users", all = true)]
pub fn clear_users() -> Result<usize, std::io::Error> {
    Ok(0)
}

#[invalidates(
    users::get_user(id),
    crate::users::get_user(id + 1),
    users::by_org::<u8>(org, 5u8),
    by_path(Path(id)),
    before = true
)]
pub async fn by_functions(id: u64, org: String) -> Result<(), String> {
    let _ = org;
    Ok(())
}

pub struct Repo {
    pub id: u32,
}

impl Repo {
    #[cached(key = "repo:{self.id}:{n}")]
    pub async fn describe(&self, n: u32) -> String {
        format!("{}:{n}", self.id)
    }

    #[cached]
    pub(crate) fn load(id: u32) -> Option<Self> {
        Some(Repo { id })
    }

    #[invalidates(Self::describe(self, n), self.describe(n + 1), Self::load(self.id))]
    pub async fn touch(&mut self, n: u32) -> Result<u32, String> {
        self.id += n;
        Ok(self.id)
    }

    #[invalidates(Repo::describe(&self, 1))]
    pub fn consume(self) -> u32 {
        self.id
    }
}

impl Clone for Repo {
    fn clone(&self) -> Self {
        Repo { id: self.id }
    }
}

/// Bodies keep their meaning: `return`, `?`, inner attributes, an `impl Trait` return type.
#[invalidates(key = "x:{x}")]
pub fn early(x: i32) -> Result<i32, String> {
    #![allow(clippy::needless_return)]
    if x < 0 {
        return Err("negative".into());
    }
    let y: i32 = "1".parse().map_err(|_| String::new())?;
    return Ok(x + y);
}

#[invalidates(key = "x:{x}")]
pub async fn displayed(x: i32) -> impl std::fmt::Display {
    x
}

#[invalidates(key = "x:{x}")]
pub fn displayed_sync(x: i32) -> impl std::fmt::Display {
    x
}

#[invalidates(tags = ["t:{x}"], crate = "::cache_core")]
pub async fn nothing_returned(x: u8) {
    let _ = x;
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        by_key(1).await.unwrap();
        by_tags_and_patterns(1, "Ada").await;
        by_functions(1, "org".into()).await.unwrap();
        let mut repo = Repo { id: 1 };
        repo.touch(1).await.unwrap();
        displayed(1).await;
        nothing_returned(1).await;
        repo.consume();
    });
    by_keys(1);
    clear_users().unwrap();
    early(1).unwrap();
    displayed_sync(1);
}
