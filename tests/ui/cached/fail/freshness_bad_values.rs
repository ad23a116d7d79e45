use cache_core::cached;

#[cached(ttl = 60, stale = 0)]
fn a(x: u32) -> u32 {
    x
}

#[cached(ttl = 60, fail_safe = "1 week")]
fn b(x: u32) -> u32 {
    x
}

#[cached(ttl = 60, refresh_ahead = 1.5)]
fn c(x: u32) -> u32 {
    x
}

#[cached(ttl = 60, jitter = 150)]
fn d(x: u32) -> u32 {
    x
}

#[cached(ttl = 60, refresh_ahead = "soon")]
fn e(x: u32) -> u32 {
    x
}

#[cached(ttl = 60, fail_safe = "99999999999999999999s")]
fn f(x: u32) -> u32 {
    x
}

fn main() {}
