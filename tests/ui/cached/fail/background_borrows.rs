use cache_core::cached;

struct Repo;

impl Repo {
    // `stale` refreshes in the background, after the call returns: `&self` cannot go along.
    #[cached(ttl = 60, stale = 600)]
    pub async fn user(&self, id: u64) -> String {
        id.to_string()
    }
}

#[cached(ttl = 60, refresh_ahead)]
async fn greeting(name: &str) -> String {
    format!("hello {name}")
}

#[cached(ttl = 60, fail_safe = 600, soft_timeout = "100ms")]
async fn lookup<'a>(names: Vec<&'a str>) -> usize {
    names.len()
}

fn main() {
    let _ = Repo;
}
