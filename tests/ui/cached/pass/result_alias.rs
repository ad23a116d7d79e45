use cache_core::cached;

#[derive(Debug)]
pub struct AppError;

impl From<std::num::ParseIntError> for AppError {
    fn from(_: std::num::ParseIntError) -> Self {
        AppError
    }
}

pub type AppResult<T> = Result<T, AppError>;

/// A `Result` behind an alias still caches only `Ok` (the compiler picks the strategy, not the
/// type's name), and `?` converts errors as in any function.
#[cached(key = "parse:{text}")]
async fn parse(text: String) -> AppResult<u32> {
    let n: u32 = text.trim().parse()?;
    Ok(n)
}

#[cached(key = "parse-sync:{text}")]
fn parse_sync(text: &str) -> AppResult<u32> {
    if text.is_empty() {
        return Err(AppError);
    }
    Ok(text.parse()?)
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    assert_eq!(rt.block_on(parse(" 5 ".to_owned())).unwrap(), 5);
    assert!(parse_sync("").is_err());
}
