use cache_core::cached;

#[cached(key = "user:{user_id}")]
async fn get_user(id: u64, name: String) -> String {
    format!("{id}{name}")
}

#[cached(key = "user:{self.id}")]
fn no_self(id: u64) -> u64 {
    id
}

#[cached(tags = ["org:{org}"])]
fn no_args() -> u64 {
    1
}

fn main() {}
