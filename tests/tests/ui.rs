//! Compile tests of the macros: what must build, and the errors of what must not.
//!
//! Bless changed `.stderr` files with `TRYBUILD=overwrite cargo test -p tests --test ui`, then read
//! each one: it should say what is wrong and point at the offending token.

#[test]
fn cached() {
    let t = trybuild::TestCases::new();
    t.pass("ui/cached/pass/*.rs");
    t.compile_fail("ui/cached/fail/*.rs");
}

#[test]
fn invalidates() {
    let t = trybuild::TestCases::new();
    t.pass("ui/invalidates/pass/*.rs");
    t.compile_fail("ui/invalidates/fail/*.rs");
}

#[test]
fn cache_if() {
    let t = trybuild::TestCases::new();
    t.pass("ui/cache_if/pass/*.rs");
    t.compile_fail("ui/cache_if/fail/*.rs");
}
