use cache_core::cached;

#[cached]
async fn refresh(id: u64) {
    let _ = id;
}

#[cached]
fn unit(id: u64) -> () {
    let _ = id;
}

fn main() {}
