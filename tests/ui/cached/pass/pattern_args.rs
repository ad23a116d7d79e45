use cache_core::cached;

struct Path<T>(T);

struct Query {
    page: u32,
    per_page: u32,
}

#[cached]
fn add((a, b): (u32, u32)) -> u32 {
    a + b
}

#[cached(key = "user:{id}")]
async fn by_path(Path(id): Path<u64>) -> u64 {
    id
}

#[cached]
fn page(
    Query {
        page,
        per_page: size,
    }: Query,
    _: u8,
) -> u32 {
    page * size
}

#[cached]
fn deref_pattern(&x: &u32, mut y: u32, ref z: u32) -> u32 {
    y += 1;
    x + y + z
}

#[cached(key = "{first}-{rest}")]
fn slice_pattern([first, rest]: [u8; 2]) -> u8 {
    first + rest
}

fn main() {
    assert_eq!(add((1, 2)), 3);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    assert_eq!(rt.block_on(by_path(Path(4))), 4);
    assert_eq!(
        page(
            Query {
                page: 2,
                per_page: 10
            },
            0
        ),
        20
    );
    assert_eq!(deref_pattern(&1, 1, 1), 4);
    assert_eq!(slice_pattern([1, 2]), 3);
}
