use cache_core::cached;

#[cached(key = "shout:{text:upper}")]
async fn shout(text: impl std::fmt::Display) -> String {
    format!("{text}!")
}

#[cached]
fn debug_of(value: impl serde::Serialize + std::fmt::Debug, times: usize) -> String {
    format!("{value:?}").repeat(times)
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    assert_eq!(rt.block_on(shout("hi")), "hi!");
    assert_eq!(debug_of(1u8, 2), "11");
}
