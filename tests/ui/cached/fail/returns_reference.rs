use cache_core::cached;

#[cached]
fn name(id: &str) -> &str {
    id
}

#[cached]
fn maybe_name(id: &'static str) -> Option<&'static str> {
    Some(id)
}

#[cached]
fn borrowed<'a>(id: &'a str) -> std::borrow::Cow<'a, str> {
    id.into()
}

fn main() {}
