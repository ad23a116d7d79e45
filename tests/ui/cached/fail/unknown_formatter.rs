use cache_core::cached;

#[cached(key = "user:{email:sha256}")]
fn by_email(email: String) -> String {
    email
}

fn main() {}
