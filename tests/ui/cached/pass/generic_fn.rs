use cache_core::cached;
use serde::Serialize;

#[cached]
fn type_size<T: Default>() -> usize {
    std::mem::size_of::<T>()
}

#[cached]
async fn first_or<T, const N: usize>(items: Vec<T>, fallback: T) -> T
where
    T: Clone + Serialize + Send + Sync + 'static,
{
    items.first().cloned().unwrap_or(fallback)
}

#[cached(key = "len:{value}")]
fn display_len<'a, D: std::fmt::Display + ?Sized>(value: &'a D) -> usize {
    value.to_string().len()
}

fn main() {
    assert_eq!(type_size::<u32>(), 4);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    assert_eq!(rt.block_on(first_or::<u8, 2>(vec![1, 2], 0)), 1);
    assert_eq!(display_len("abc"), 3);
}
