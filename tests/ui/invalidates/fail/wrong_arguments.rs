use cache_core::{cached, invalidates};

#[cached(key = "user:{id}")]
fn get_user(id: u64) -> u64 {
    id
}

#[cached(key = "search:{q}:{page}")]
async fn search(q: &str, page: u32) -> Vec<String> {
    vec![format!("{q}{page}")]
}

#[invalidates(get_user(name))]
fn wrong_type(name: &str) {
    let _ = name;
}

#[invalidates(search(q, page as u64))]
fn wrong_second(q: String, page: u32) {
    let _ = (q, page);
}

#[invalidates(get_user(id, 2))]
fn too_many(id: u64) {
    let _ = id;
}

fn main() {}
