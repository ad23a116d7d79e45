//! [`KeyBuf`]: the stack buffer a key (or a tag, or a pattern) is rendered into.

use std::fmt;

use super::escape::{Case, Escaper};

/// Values that can stand in a key template placeholder: anything with `Display`.
///
/// The value is written through its `Display` output and escaped (see
/// [`escape_key_part`](crate::escape_key_part)).
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be used in a cache key template",
    label = "this placeholder's value does not implement `std::fmt::Display`",
    note = "implement `Display` for `{Self}`, name a field that has it (`{{arg.field}}`), or build the key with `key = <expression>`"
)]
pub trait KeyPart {
    /// Writes the value's key form.
    fn write_key_part(&self, out: &mut dyn fmt::Write) -> fmt::Result;
}

impl<T: fmt::Display + ?Sized> KeyPart for T {
    #[inline]
    fn write_key_part(&self, out: &mut dyn fmt::Write) -> fmt::Result {
        write!(out, "{self}")
    }
}

/// Arguments that can take part in a default key (no `key = ...`): anything `serde::Serialize`.
///
/// They are serialized as MessagePack with named fields and hashed with XXH3-128, so the key is
/// stable across processes and releases. A struct's fields are written in their declared order:
/// reordering them (as renaming, adding or removing one) changes the key.
#[diagnostic::on_unimplemented(
    message = "argument of type `{Self}` cannot be part of the default cache key",
    label = "this argument does not implement `serde::Serialize`",
    note = "derive `serde::Serialize` for `{Self}`, leave the argument out with `skip(...)`, or give the function an explicit `key = \"...\"`"
)]
pub trait KeyArgs {
    /// Serializes the value into `out` for hashing.
    fn serialize_for_key(&self, out: &mut ArgBytes) -> Result<(), rmp_serde::encode::Error>;
}

impl<T: serde::Serialize + ?Sized> KeyArgs for T {
    #[inline]
    fn serialize_for_key(&self, out: &mut ArgBytes) -> Result<(), rmp_serde::encode::Error> {
        // `rmp_serde`'s named form, but one-to-one for nested `Option`s and independent of a
        // map's iteration order (see `args.rs`).
        self.serialize(super::args::KeySerializer { out })
    }
}

/// A default key's argument list: the tuple of references the macro builds, `(&id, &name)`.
///
/// Encoded as the MessagePack array of its elements, header first, each element by
/// [`KeyArgs`]. Written out here rather than through serde's tuple impl, because `rmp_serde`
/// buffers a tuple's elements (to find tuples of bytes) and then moves that buffer: the move's
/// wide load of fields just written narrowly stalled every default-key hit for a tenth of its
/// time. A tuple whose elements are all `u8`s is therefore an array here, where `rmp_serde`
/// would have written binary.
pub trait KeyArgsTuple {
    /// Serializes the argument list into `out` for hashing.
    fn serialize_args(&self, out: &mut ArgBytes) -> Result<(), rmp_serde::encode::Error>;
}

macro_rules! key_args_tuple {
    ($len:literal: $($name:ident . $index:tt),+) => {
        impl<$($name: KeyArgs),+> KeyArgsTuple for ($($name,)+) {
            #[inline]
            fn serialize_args(&self, out: &mut ArgBytes) -> Result<(), rmp_serde::encode::Error> {
                out.array_header($len);
                $(self.$index.serialize_for_key(out)?;)+
                Ok(())
            }
        }
    };
}

/// No arguments: a default key whose every argument is configured out by its `#[cfg]` (a function
/// that takes none has no argument hash at all), an empty MessagePack array.
impl KeyArgsTuple for () {
    #[inline]
    fn serialize_args(&self, out: &mut ArgBytes) -> Result<(), rmp_serde::encode::Error> {
        out.array_header(0);
        Ok(())
    }
}

key_args_tuple!(1: A.0);
key_args_tuple!(2: A.0, B.1);
key_args_tuple!(3: A.0, B.1, C.2);
key_args_tuple!(4: A.0, B.1, C.2, D.3);
key_args_tuple!(5: A.0, B.1, C.2, D.3, E.4);
key_args_tuple!(6: A.0, B.1, C.2, D.3, E.4, F.5);
key_args_tuple!(7: A.0, B.1, C.2, D.3, E.4, F.5, G.6);
key_args_tuple!(8: A.0, B.1, C.2, D.3, E.4, F.5, G.6, H.7);
key_args_tuple!(9: A.0, B.1, C.2, D.3, E.4, F.5, G.6, H.7, I.8);
key_args_tuple!(10: A.0, B.1, C.2, D.3, E.4, F.5, G.6, H.7, I.8, J.9);
key_args_tuple!(11: A.0, B.1, C.2, D.3, E.4, F.5, G.6, H.7, I.8, J.9, K.10);
key_args_tuple!(12: A.0, B.1, C.2, D.3, E.4, F.5, G.6, H.7, I.8, J.9, K.10, L.11);
key_args_tuple!(13: A.0, B.1, C.2, D.3, E.4, F.5, G.6, H.7, I.8, J.9, K.10, L.11, M.12);
key_args_tuple!(14: A.0, B.1, C.2, D.3, E.4, F.5, G.6, H.7, I.8, J.9, K.10, L.11, M.12, N.13);
key_args_tuple!(15: A.0, B.1, C.2, D.3, E.4, F.5, G.6, H.7, I.8, J.9, K.10, L.11, M.12, N.13, O.14);
key_args_tuple!(16: A.0, B.1, C.2, D.3, E.4, F.5, G.6, H.7, I.8, J.9, K.10, L.11, M.12, N.13, O.14, P.15);

/// The serialized bytes of a default key's arguments: on the stack up to 64 bytes
/// (ids, short strings), on the heap past that. A thread-local scratch `Vec` served before; its
/// access and borrow flag cost more than the few bytes a typical argument list needs.
#[derive(Debug)]
pub struct ArgBytes(StackBytes<ARG_INLINE>);

/// [`ArgBytes`]'s inline capacity.
const ARG_INLINE: usize = 64;

impl ArgBytes {
    #[inline(always)]
    pub(super) fn new() -> Self {
        ArgBytes(StackBytes::new())
    }

    #[inline(always)]
    pub(super) fn len(&self) -> usize {
        self.0.len
    }

    /// Drops the bytes from `len` on (the key serializer's rewrite of a `Some`).
    pub(super) fn truncate(&mut self, len: usize) {
        self.0.truncate(len);
    }

    /// A MessagePack array header for `len` elements (at most 16: tuples are nested past that).
    #[inline(always)]
    fn array_header(&mut self, len: u8) {
        debug_assert!(len <= 16);
        if len < 16 {
            self.push(&[0x90 | len]);
        } else {
            self.push(&[0xdc, 0, 16]);
        }
    }

    #[inline(always)]
    pub(super) fn push(&mut self, bytes: &[u8]) {
        self.0.push(bytes);
    }

    #[inline(always)]
    pub(super) fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl std::io::Write for ArgBytes {
    #[inline(always)]
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.push(buf);
        Ok(buf.len())
    }

    #[inline(always)]
    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.push(buf);
        Ok(())
    }

    #[inline(always)]
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A primitive integer placeholder value, for [`KeyBuf::part_or_int`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Int {
    /// `u8` to `u64`, `usize`.
    Unsigned(u64),
    /// `i8` to `i64`, `isize`.
    Signed(i64),
}

/// Asks the compiler, by autoref specialization, whether a placeholder's value is a primitive
/// integer: `(&&IntProbe(&value)).int()` resolves to [`IntViaPrimitive`] for integers and to
/// [`IntViaDisplay`] (`None`) for everything else, with no bound that could fail.
#[derive(Debug)]
pub struct IntProbe<'a, T: ?Sized>(pub &'a T);

/// The integer side of [`IntProbe`].
pub trait IntViaPrimitive {
    /// The value as an [`Int`].
    fn int(&self) -> Option<Int>;
}

/// The fallback side of [`IntProbe`].
pub trait IntViaDisplay {
    /// Not an integer: `None`.
    fn int(&self) -> Option<Int> {
        None
    }
}

impl<T: ?Sized> IntViaDisplay for IntProbe<'_, T> {}

macro_rules! int_probe {
    ($variant:ident as $wide:ty: $($t:ty),*) => {$(
        impl IntViaPrimitive for &IntProbe<'_, $t> {
            #[inline(always)]
            fn int(&self) -> Option<Int> {
                Some(Int::$variant(*self.0 as $wide))
            }
        }
    )*};
}
int_probe!(Unsigned as u64: u8, u16, u32, u64, usize);
int_probe!(Signed as i64: i8, i16, i32, i64, isize);

/// Asks the compiler, by autoref specialization, whether a placeholder's value is a string whose
/// `Display` is the string itself: `(&&StrProbe(&value)).str()` resolves to [`StrViaStr`] for
/// `str`, `String` and the usual references and pointers to them, and to [`StrViaDisplay`]
/// (`None`) for everything else, with no bound that could fail.
///
/// Only these exact types: a type of the user's own that is `AsRef<str>` may display something
/// else, and its key is its `Display` output.
#[derive(Debug)]
pub struct StrProbe<'a, T: ?Sized>(pub &'a T);

/// The string side of [`StrProbe`].
pub trait StrViaStr<'a> {
    /// The value as a `&str`.
    fn str(&self) -> Option<&'a str>;
}

/// The fallback side of [`StrProbe`].
pub trait StrViaDisplay<'a> {
    /// Not a string: `None`.
    fn str(&self) -> Option<&'a str> {
        None
    }
}

impl<'a, T: ?Sized> StrViaDisplay<'a> for StrProbe<'a, T> {}

macro_rules! str_probe {
    ($($t:ty),*) => {$(
        impl<'a> StrViaStr<'a> for &StrProbe<'a, $t> {
            #[inline(always)]
            fn str(&self) -> Option<&'a str> {
                Some(self.0.as_ref())
            }
        }
    )*};
}
str_probe!(
    str,
    String,
    &str,
    &String,
    Box<str>,
    std::rc::Rc<str>,
    std::sync::Arc<str>,
    std::borrow::Cow<'_, str>
);

/// Inline capacity: keys up to this many bytes are rendered without touching the heap.
const INLINE: usize = 120;

/// A key, tag or pattern being rendered. Holds up to 120 bytes inline, then spills to the heap.
///
/// Hand-written rather than a `SmallVec` because the hit path appends a handful of tiny slices
/// and `SmallVec::extend_from_slice` goes through a general insert (two library calls per append).
#[derive(Clone)]
pub struct KeyBuf {
    bytes: StackBytes<INLINE>,
}

/// Bytes on the stack up to `N`, then on the heap: the storage of [`KeyBuf`] and [`ArgBytes`].
#[derive(Clone, Debug)]
struct StackBytes<const N: usize> {
    len: usize,
    inline: [u8; N],
    /// Used instead of `inline` once the bytes outgrow it.
    spill: Vec<u8>,
}

impl<const N: usize> StackBytes<N> {
    #[inline(always)]
    fn new() -> Self {
        StackBytes {
            len: 0,
            inline: [0; N],
            spill: Vec::new(),
        }
    }

    #[inline(always)]
    fn push(&mut self, bytes: &[u8]) {
        let end = self.len + bytes.len();
        if end <= N {
            // Appended in pieces of a few bytes; a plain loop beats a library call.
            for (dst, src) in self.inline[self.len..end].iter_mut().zip(bytes) {
                *dst = *src;
            }
            self.len = end;
        } else {
            self.push_spilled(bytes);
        }
    }

    #[cold]
    fn push_spilled(&mut self, bytes: &[u8]) {
        if self.spill.is_empty() {
            self.spill.reserve(2 * (self.len + bytes.len()));
            self.spill
                .extend_from_slice(&self.inline[..self.len.min(N)]);
        }
        self.spill.extend_from_slice(bytes);
        self.len += bytes.len();
    }

    #[inline(always)]
    fn as_bytes(&self) -> &[u8] {
        if self.len <= N && self.spill.is_empty() {
            &self.inline[..self.len]
        } else {
            &self.spill
        }
    }

    fn clear(&mut self) {
        self.len = 0;
        self.spill.clear();
    }

    /// Keeps the first `len` bytes. Back inline when they fit: `push` writes inline whenever the
    /// end does, so spilled bytes must always end past `N`.
    fn truncate(&mut self, len: usize) {
        debug_assert!(len <= self.len);
        if !self.spill.is_empty() {
            if len <= N {
                self.inline[..len].copy_from_slice(&self.spill[..len]);
                self.spill.clear();
            } else {
                self.spill.truncate(len);
            }
        }
        self.len = len;
    }
}

impl Default for KeyBuf {
    #[inline(always)]
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for KeyBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Write for KeyBuf {
    #[inline(always)]
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.push_bytes(s.as_bytes());
        Ok(())
    }
}

impl KeyBuf {
    /// An empty buffer.
    #[inline(always)]
    pub fn new() -> Self {
        KeyBuf {
            bytes: StackBytes::new(),
        }
    }

    /// A buffer holding `key` as it is (no escaping): for keys given as whole strings.
    #[inline]
    pub fn from_key(key: &str) -> Self {
        let mut k = KeyBuf::new();
        k.push_bytes(key.as_bytes());
        k
    }

    #[inline(always)]
    fn push_bytes(&mut self, bytes: &[u8]) {
        self.bytes.push(bytes);
    }

    #[inline(always)]
    fn push_byte(&mut self, b: u8) {
        self.push_bytes(&[b]);
    }

    /// Appends a literal part of a template, unescaped.
    #[inline(always)]
    pub fn lit(&mut self, s: &str) {
        self.push_bytes(s.as_bytes());
    }

    /// Appends a placeholder's value: its `Display` output, escaped.
    #[inline]
    pub fn part<T: KeyPart + ?Sized>(&mut self, value: &T) {
        self.part_cased(value, Case::Keep);
    }

    /// Appends a placeholder's value, taking the integer fast path when the macro's
    /// [`IntProbe`] found a primitive integer (no formatting machinery, nothing to escape), and
    /// the string one when its [`StrProbe`] found a string (escaped as `part` would, without the
    /// formatting machinery: `Display` of a `str` is the `str`).
    #[inline(always)]
    pub fn part_or_int<T: KeyPart + ?Sized>(
        &mut self,
        value: &T,
        int: Option<Int>,
        text: Option<&str>,
    ) {
        match (int, text) {
            (Some(Int::Unsigned(n)), _) => self.push_u64(n),
            (Some(Int::Signed(n)), _) => {
                if n < 0 {
                    self.push_byte(b'-');
                }
                self.push_u64(n.unsigned_abs());
            }
            (None, Some(text)) => {
                // Exactly what `write!(escaper, "{text}")` does for a `str` with no width or
                // precision: one `write_str` of the whole string.
                let _ = fmt::Write::write_str(
                    &mut Escaper {
                        inner: self,
                        case: Case::Keep,
                    },
                    text,
                );
            }
            (None, None) => self.part(value),
        }
    }

    /// Appends a literal part and the placeholder after it, as [`lit`](Self::lit) then
    /// [`part_or_int`](Self::part_or_int) would. A literal of up to eight bytes followed by an
    /// integer below 10^8 (`user:{id}`) is written with one 16-byte store: the lookup hash and
    /// the hit's key comparison then load words that lie inside that one store, which the CPU
    /// forwards to them, where a word spanning the literal's store and the digits' waited for
    /// both to reach the cache (a load at `xxh3`'s last word was 5% of a hit).
    #[inline(always)]
    pub fn lit_part_or_int<T: KeyPart + ?Sized>(
        &mut self,
        lit: &str,
        value: &T,
        int: Option<Int>,
        text: Option<&str>,
    ) {
        if let Some(Int::Unsigned(n)) = int {
            let at = self.bytes.len;
            if lit.len() <= 8 && n < 100_000_000 && at + 16 <= INLINE {
                let digits = n.checked_ilog10().map_or(1, |l| l as usize + 1);
                // The literal is a constant of the expansion: this word folds to a constant.
                let mut lit_word = [0u8; 8];
                lit_word[..lit.len()].copy_from_slice(lit.as_bytes());
                let text = u128::from(u64::from_le_bytes(lit_word))
                    | u128::from(eight_digits(n as u32) >> (8 * (8 - digits))) << (8 * lit.len());
                self.bytes.inline[at..at + 16].copy_from_slice(&text.to_le_bytes());
                self.bytes.len = at + lit.len() + digits;
                return;
            }
        }
        self.lit(lit);
        self.part_or_int(value, int, text);
    }

    #[inline(always)]
    fn push_u64(&mut self, n: u64) {
        let len = n.checked_ilog10().map_or(1, |l| l as usize + 1);
        let end = self.bytes.len + len;
        if n < 100_000_000 && self.bytes.len + 8 <= INLINE {
            // Up to eight digits (ids, counts) are computed in one register and written with
            // one store: digit-by-digit stores were a loop of divisions, and the hash's wide
            // loads right after them waited for the bytes to reach the cache.
            let digits = eight_digits(n as u32) >> (8 * (8 - len));
            self.bytes.inline[self.bytes.len..self.bytes.len + 8]
                .copy_from_slice(&digits.to_le_bytes());
            self.bytes.len = end;
        } else if end <= INLINE {
            // Written in place: a separate digit buffer copied in afterwards became a `memcpy`
            // call whose loads stalled on the digits' just-written bytes.
            write_decimal(&mut self.bytes.inline[self.bytes.len..end], n);
            self.bytes.len = end;
        } else {
            let mut digits = [0u8; 20];
            write_decimal(&mut digits[..len], n);
            self.bytes.push_spilled(&digits[..len]);
        }
    }

    /// Appends a placeholder's value lowercased (`{arg:lower}`), escaped.
    pub fn part_lower<T: KeyPart + ?Sized>(&mut self, value: &T) {
        self.part_cased(value, Case::Lower);
    }

    /// Appends a placeholder's value uppercased (`{arg:upper}`), escaped.
    pub fn part_upper<T: KeyPart + ?Sized>(&mut self, value: &T) {
        self.part_cased(value, Case::Upper);
    }

    #[inline]
    fn part_cased<T: KeyPart + ?Sized>(&mut self, value: &T, case: Case) {
        let mut esc = Escaper { inner: self, case };
        // Writing into memory cannot fail; a `Display` impl that returns an error leaves what it
        // wrote, which is still a deterministic key.
        let _ = value.write_key_part(&mut esc);
    }

    /// Appends a stable 64-bit hash of the value's `Display` output as 16 hex digits
    /// (`{arg:hash}`), so personal data such as an email address never appears in a key.
    pub fn part_hashed<T: KeyPart + ?Sized>(&mut self, value: &T) {
        let mut scratch = KeyBuf::new();
        let _ = value.write_key_part(&mut scratch);
        self.push_hex(super::stable_hash64(scratch.as_bytes()) as u128, 16);
    }

    /// Appends the whole `Display` output of a `key = <expression>` value, unescaped: the user
    /// built that key and owns its format.
    #[inline]
    pub fn whole<T: KeyPart + ?Sized>(&mut self, value: &T) {
        let _ = value.write_key_part(self);
    }

    /// Appends a placeholder's value inside a glob pattern: its key form, escaped once more so
    /// it matches only itself (a user id of `*` names one user, not all of them).
    pub fn pattern_part<T: KeyPart + ?Sized>(&mut self, value: &T) {
        let mut key_form = KeyBuf::new();
        key_form.part(value);
        for &b in key_form.as_bytes() {
            if matches!(b, b'\\' | b'*' | b'?' | b'[' | b']' | b'^') {
                self.push_byte(b'\\');
            }
            self.push_byte(b);
        }
    }

    /// Appends a stable hash of serialized arguments (32 hex digits), the default key's tail.
    #[inline]
    pub fn args_hash<A: KeyArgsTuple + ?Sized>(&mut self, args: &A) {
        let hash = hash_args(args);
        self.push_hex(hash, 32);
    }

    /// [`args_hash`](Self::args_hash) of an argument list whose one argument the macro's
    /// [`IntProbe`] found to be a primitive integer: the same 32 digits, from the argument's
    /// MessagePack form built in a register and written with one store. Through `rmp_serde` the
    /// form was written a byte or two at a time, and `XXH3`'s word loads right after spanned
    /// those stores, which the CPU cannot forward: the loads waited for the bytes to reach the
    /// cache, half of the hash's time and a tenth of a default-key hit.
    #[inline(always)]
    pub fn args_hash_or_int<A: KeyArgsTuple + ?Sized>(&mut self, args: &A, int: Option<Int>) {
        let hash = match int {
            Some(n) => hash_one_int(n),
            None => hash_args(args),
        };
        self.push_hex(hash, 32);
    }

    /// Appends a type's name, for keys of generic functions (`::<u32>`).
    pub fn type_name<T: ?Sized>(&mut self) {
        self.lit(std::any::type_name::<T>());
    }

    /// The rendered key.
    #[inline]
    pub fn as_str(&self) -> &str {
        // Every write appends whole `&str`s or ASCII bytes, so the bytes are valid UTF-8.
        std::str::from_utf8(self.as_bytes()).unwrap_or("")
    }

    /// The rendered bytes.
    #[inline(always)]
    pub fn as_bytes(&self) -> &[u8] {
        self.bytes.as_bytes()
    }

    /// The memory tier's lookup hash of this key.
    #[inline(always)]
    pub fn lookup_hash(&self) -> u64 {
        super::lookup_hash(self.as_bytes())
    }

    /// Empties the buffer, keeping its allocation.
    pub fn clear(&mut self) {
        self.bytes.clear();
    }

    /// Appends the low `digits` hex digits of `value` (16 or 32).
    #[inline]
    fn push_hex(&mut self, value: u128, digits: usize) {
        debug_assert!(digits == 16 || digits == 32);
        let halves = [hex16((value >> 64) as u64), hex16(value as u64)];
        let halves = &halves[2 - (digits / 16).clamp(1, 2)..];
        if self.bytes.len + 16 * halves.len() <= INLINE {
            // Eight digits a store, straight from registers: a copy of a variable length became
            // a `memcpy` call, and a 16-byte copy of an array a wide load, each stalling on the
            // digits' just-written narrower stores.
            for half in halves {
                let (high, low) = ((half >> 64) as u64, *half as u64);
                self.bytes.inline[self.bytes.len..self.bytes.len + 8]
                    .copy_from_slice(&high.to_be_bytes());
                self.bytes.inline[self.bytes.len + 8..self.bytes.len + 16]
                    .copy_from_slice(&low.to_be_bytes());
                self.bytes.len += 16;
            }
        } else {
            for half in halves {
                self.bytes.push_spilled(&half.to_be_bytes());
            }
        }
    }
}

/// Writes `n` in decimal into `out`, which is exactly as long as its digits, last digit first.
#[inline(always)]
fn write_decimal(out: &mut [u8], mut n: u64) {
    for d in out.iter_mut().rev() {
        *d = b'0' + (n % 10) as u8;
        n /= 10;
    }
}

/// The eight decimal digits of `n < 100_000_000`, zero-padded, as ASCII in a `u64` whose
/// lowest byte is the first digit (so `to_le_bytes` is the text): the number is split into 4-,
/// 2- and 1-digit lanes with multiplications by reciprocals, each exact below its bound.
#[inline(always)]
fn eight_digits(n: u32) -> u64 {
    debug_assert!(n < 100_000_000);
    // Two 4-digit halves, the high one in the low lane (it is written first).
    let x = u64::from(n / 10_000) | (u64::from(n % 10_000) << 32);
    // Each 32-bit lane (< 10,000) into two 2-digit lanes: x * 10486 >> 20 == x / 100 there.
    let hundreds = ((x * 10_486) >> 20) & 0x0000_007f_0000_007f;
    let x = hundreds | ((x - hundreds * 100) << 16);
    // Each 16-bit lane (< 100) into two digits: x * 103 >> 10 == x / 10 there.
    let tens = ((x * 103) >> 10) & 0x000f_000f_000f_000f;
    let x = tens | ((x - tens * 10) << 8);
    x + 0x3030_3030_3030_3030
}

/// The 16 lowercase hex digits of `x`, computed in one 128-bit register: each nibble spread to
/// a byte, then mapped to ASCII without a table or a branch; the text is the result's big-endian
/// bytes. A table lookup per byte had made the 32 digits of a default key a tenth of its hit.
#[inline(always)]
fn hex16(x: u64) -> u128 {
    const LOW_NIBBLES: u128 = 0x0f0f_0f0f_0f0f_0f0f_0f0f_0f0f_0f0f_0f0f;
    const EACH_BYTE: u128 = 0x0101_0101_0101_0101_0101_0101_0101_0101;
    let mut v = u128::from(x);
    v = (v | (v << 32)) & 0x0000_0000_ffff_ffff_0000_0000_ffff_ffff;
    v = (v | (v << 16)) & 0x0000_ffff_0000_ffff_0000_ffff_0000_ffff;
    v = (v | (v << 8)) & 0x00ff_00ff_00ff_00ff_00ff_00ff_00ff_00ff;
    v = (v | (v << 4)) & LOW_NIBBLES;
    // Bytes of 10..=15 carry into bit 4 when 6 is added: those get `'a' - '0' - 10` more.
    let letters = ((v + 6 * EACH_BYTE) >> 4) & EACH_BYTE;
    v + u128::from(b'0') * EACH_BYTE + letters * u128::from(b'a' - b'0' - 10)
}

/// [`hash_args`] of a one-element argument list holding `n`: the MessagePack array header
/// (`0x91`) and `n` in the most compact form `rmp_serde` writes for it, built in a register.
#[inline(always)]
fn hash_one_int(n: Int) -> u128 {
    let (form, len) = match n {
        Int::Unsigned(n) => msgpack_uint(n),
        Int::Signed(n) if n >= 0 => msgpack_uint(n as u64),
        Int::Signed(n) => msgpack_negative(n),
    };
    let bytes = (0x91 | form << 8).to_le_bytes();
    super::stable_hash128(&bytes[..1 + len])
}

/// MessagePack's most compact form of `n` (as `rmp::encode::write_uint` writes it), as the
/// little-endian bytes of a register, and its length.
#[inline(always)]
fn msgpack_uint(n: u64) -> (u128, usize) {
    match n {
        0..0x80 => (u128::from(n), 1),
        0x80..0x100 => (0xcc | u128::from(n) << 8, 2),
        0x100..0x1_0000 => (0xcd | u128::from((n as u16).swap_bytes()) << 8, 3),
        0x1_0000..0x1_0000_0000 => (0xce | u128::from((n as u32).swap_bytes()) << 8, 5),
        _ => (0xcf | u128::from(n.swap_bytes()) << 8, 9),
    }
}

/// The same for a negative `n` (as `rmp::encode::write_sint` writes it).
#[inline(always)]
fn msgpack_negative(n: i64) -> (u128, usize) {
    debug_assert!(n < 0);
    match n {
        // Negative fixint: `0xe0 | (n & 0x1f)`, which is `n`'s low byte.
        -32..0 => (u128::from(n as u8), 1),
        -128..-32 => (0xd0 | u128::from(n as u8) << 8, 2),
        -32_768..-128 => (0xd1 | u128::from((n as u16).swap_bytes()) << 8, 3),
        -2_147_483_648..-32_768 => (0xd2 | u128::from((n as u32).swap_bytes()) << 8, 5),
        _ => (0xd3 | u128::from((n as u64).swap_bytes()) << 8, 9),
    }
}

#[inline]
fn hash_args<A: KeyArgsTuple + ?Sized>(args: &A) -> u128 {
    let mut bytes = ArgBytes::new();
    if let Err(e) = args.serialize_args(&mut bytes) {
        // A `Serialize` impl that fails has no stable form; hash what it wrote plus the error so
        // the key is still deterministic for the same input.
        tracing::debug!(error = %e, "cache key arguments failed to serialize");
        bytes.push(e.to_string().as_bytes());
    }
    super::stable_hash128(bytes.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_parts_are_escaped_and_literals_are_not() {
        let mut k = KeyBuf::new();
        k.lit("user:");
        k.part(&"a:b*");
        assert_eq!(k.as_str(), "user:a\\:b\\*");
    }

    #[test]
    fn distinct_values_never_share_a_key() {
        let render = |a: &str, b: &str| {
            let mut k = KeyBuf::new();
            k.part(&a);
            k.lit(":");
            k.part(&b);
            k.as_str().to_owned()
        };
        assert_ne!(render("1:2", "3"), render("1", "2:3"));
        assert_ne!(render("\\", ":"), render("\\:", ""));
    }

    #[test]
    fn pattern_parts_match_only_themselves() {
        let mut p = KeyBuf::new();
        p.lit("user:");
        p.pattern_part(&"*");
        p.lit(":*");
        assert_eq!(p.as_str(), "user:\\\\\\*:*");
        let glob = crate::Glob::new(p.as_str());
        let mut key = KeyBuf::new();
        key.lit("user:");
        key.part(&"*");
        key.lit(":videos");
        assert!(glob.matches(key.as_str()));
        assert!(!glob.matches("user:1:videos"));
    }

    #[test]
    fn long_keys_spill_to_the_heap_intact() {
        let mut k = KeyBuf::new();
        let long = "x".repeat(100);
        k.lit(&long);
        k.lit(":");
        k.part(&long);
        assert_eq!(k.as_str(), format!("{long}:{long}"));
        assert_eq!(
            k.lookup_hash(),
            crate::key::lookup_hash(format!("{long}:{long}").as_bytes())
        );
        k.clear();
        k.lit("a");
        assert_eq!(k.as_str(), "a");
    }

    #[test]
    fn the_integer_fast_path_writes_what_display_writes() {
        // Prefixes put the digits inline, across the inline buffer's end, and after a spill.
        for prefix in [0, 1, INLINE - 20, INLINE - 3, INLINE, INLINE + 5] {
            for n in [0u64, 7, 9, 10, 42, 99, 100, 1_000, 999_999, u64::MAX] {
                let (mut fast, mut slow) = (KeyBuf::new(), KeyBuf::new());
                fast.lit(&"p".repeat(prefix));
                slow.lit(&"p".repeat(prefix));
                fast.part_or_int(&n, (&&IntProbe(&n)).int(), None);
                slow.part(&n);
                assert_eq!(fast.as_str(), slow.as_str());
                assert_eq!(fast.lookup_hash(), slow.lookup_hash());
            }
        }
        for n in [i64::MIN, -42, 0, 42, i64::MAX] {
            let (mut fast, mut slow) = (KeyBuf::new(), KeyBuf::new());
            fast.part_or_int(&n, (&&IntProbe(&n)).int(), None);
            slow.part(&n);
            assert_eq!(fast.as_str(), slow.as_str());
        }
        let text = "a:b";
        #[allow(clippy::needless_borrow)] // the autoref is the point
        let probe = (&&IntProbe(&text)).int();
        assert_eq!(probe, None);
        assert_eq!((&&IntProbe(&5u8)).int(), Some(Int::Unsigned(5)));
    }

    #[test]
    fn a_literal_and_integer_in_one_store_write_what_they_write_apart() {
        // Before the pair: nothing, a few bytes, the inline buffer nearly full, past it. Literals
        // from empty to past the one-store limit of eight bytes; integers around every digit
        // count's bounds, the limit of 10^8, and a signed and a non-integer value.
        for prefix in [
            0,
            3,
            INLINE - 24,
            INLINE - 16,
            INLINE - 15,
            INLINE,
            INLINE + 5,
        ] {
            for lit in ["", "u", "user:", "account:", "accounts:"] {
                for n in [
                    0u64,
                    9,
                    10,
                    42,
                    999,
                    12_345_678,
                    99_999_999,
                    100_000_000,
                    u64::MAX,
                ] {
                    let (mut one, mut apart) = (KeyBuf::new(), KeyBuf::new());
                    one.lit(&"p".repeat(prefix));
                    apart.lit(&"p".repeat(prefix));
                    one.lit_part_or_int(lit, &n, (&&IntProbe(&n)).int(), None);
                    // What follows lands right after the pair, over the store's zero padding.
                    one.lit(":x");
                    apart.lit(lit);
                    apart.part(&n);
                    apart.lit(":x");
                    assert_eq!(one.as_str(), apart.as_str(), "{prefix} {lit:?} {n}");
                    assert_eq!(one.lookup_hash(), apart.lookup_hash());
                }
                let (mut one, mut apart) = (KeyBuf::new(), KeyBuf::new());
                one.lit_part_or_int(lit, &-7i32, (&&IntProbe(&-7i32)).int(), None);
                apart.lit(lit);
                apart.part(&-7i32);
                assert_eq!(one.as_str(), apart.as_str());
                let text = "a b";
                let (mut one, mut apart) = (KeyBuf::new(), KeyBuf::new());
                #[allow(clippy::needless_borrow)] // the autoref is the point
                one.lit_part_or_int(lit, &text, (&&IntProbe(&text)).int(), None);
                apart.lit(lit);
                apart.part(&text);
                assert_eq!(one.as_str(), apart.as_str());
            }
        }
    }

    #[test]
    fn control_characters_are_spelled_out() {
        let mut k = KeyBuf::new();
        k.part(&"a\nb\0");
        assert_eq!(k.as_str(), "a\\x0ab\\x00");
    }

    #[test]
    fn hashed_parts_are_stable_hex() {
        let mut k = KeyBuf::new();
        k.part_hashed(&"alice@example.com");
        assert_eq!(k.as_str().len(), 16);
        // Pinned: this hash is part of every stored key and must not change between releases.
        assert_eq!(
            k.as_str(),
            format!("{:016x}", xxhash_rust::xxh3::xxh3_64(b"alice@example.com"))
        );
    }

    #[test]
    fn case_formatters() {
        let mut k = KeyBuf::new();
        k.part_lower(&"MiXeD");
        k.lit("|");
        k.part_upper(&"MiXeD");
        assert_eq!(k.as_str(), "mixed|MIXED");
    }

    #[test]
    fn args_hash_is_stable_and_distinguishes_arguments() {
        let h = |a: &(u64, &str)| {
            let mut k = KeyBuf::new();
            k.args_hash(a);
            k.as_str().to_owned()
        };
        assert_eq!(h(&(1, "x")), h(&(1, "x")));
        assert_ne!(h(&(1, "x")), h(&(2, "x")));
        assert_eq!(h(&(1, "x")).len(), 32);
    }

    /// Default keys outlive a release in Redis: the argument list must keep encoding exactly as
    /// `rmp_serde` encodes the same tuple (named fields), apart from all-`u8` tuples (see
    /// [`KeyArgsTuple`]).
    #[test]
    fn argument_lists_encode_as_rmp_serde_encodes_the_tuple() {
        #[derive(serde::Serialize)]
        struct Filter {
            name: String,
            limit: Option<u32>,
        }
        fn check<T: KeyArgsTuple + serde::Serialize>(args: T) {
            let mut ours = ArgBytes::new();
            args.serialize_args(&mut ours).unwrap();
            assert_eq!(ours.as_bytes(), rmp_serde::to_vec_named(&args).unwrap());
        }
        check((&42u64,));
        check((&u64::MAX, &-7i32, &"name", &2.5f64, &true));
        check((
            &Filter {
                name: "a:b".repeat(40),
                limit: Some(3),
            },
            &vec![1u16, 2, 300],
            &None::<u8>,
        ));
        check((
            1u64, 2u64, 3u64, 4u64, 5u64, 6u64, 7u64, 8u64, 9u64, 10u64, 11u64, 12u64, 13u64,
            14u64, 15u64,
        ));
        check((
            1u64, 2u64, 3u64, 4u64, 5u64, 6u64, 7u64, 8u64, 9u64, 10u64, 11u64, 12u64, 13u64,
            14u64, 15u64, 16u64,
        ));
        // The documented exception: all-`u8` lists are arrays here (rmp_serde: binary).
        let mut ours = ArgBytes::new();
        (&1u8, &200u8).serialize_args(&mut ours).unwrap();
        assert_eq!(ours.as_bytes(), [0x92, 0x01, 0xcc, 200]);
    }

    #[test]
    fn eight_digits_match_format_across_the_range() {
        let mut n = 0u32;
        while n < 100_000_000 {
            assert_eq!(
                eight_digits(n).to_le_bytes(),
                *format!("{n:08}").as_bytes(),
                "{n}"
            );
            // Every number below 100,000, then a stride that visits every digit position.
            n += if n < 100_000 { 1 } else { 9_973 };
        }
        assert_eq!(&eight_digits(99_999_999).to_le_bytes(), b"99999999");
        for n in [
            0u64,
            7,
            10,
            99,
            100,
            12_345_678,
            99_999_999,
            100_000_000,
            u64::MAX,
        ] {
            let mut k = KeyBuf::new();
            k.lit("user:");
            k.push_u64(n);
            assert_eq!(k.as_str(), format!("user:{n}"));
        }
    }

    /// Hex digits are part of stored keys (Redis keys outlive a release): they must stay exactly
    /// `format!("{:032x}")` / `{:016x}`, lowercase and zero-padded.
    #[test]
    fn hex16_matches_format_on_every_nibble_value_and_many_numbers() {
        let mut x = 0x9e37_79b9_7f4a_7c15_u64;
        for i in 0..100_000u64 {
            // Every single nibble value in every position, then pseudo-random numbers.
            let value = if i < 256 {
                (i % 16) << (4 * (i / 16))
            } else {
                x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                x
            };
            assert_eq!(
                hex16(value).to_be_bytes(),
                *format!("{value:016x}").as_bytes()
            );
        }
    }

    #[test]
    fn hex_digits_are_the_standard_lowercase_padded_form() {
        for value in [
            0u128,
            1,
            0xabc,
            u128::from(u64::MAX),
            u128::MAX,
            0x0123_4567_89ab_cdef_fedc_ba98_7654_3210,
        ] {
            // Inline, across the inline buffer's end, and after a spill.
            for prefix in [0, INLINE - 32, INLINE - 5, INLINE + 3] {
                let p = "p".repeat(prefix);
                let mut k = KeyBuf::new();
                k.lit(&p);
                k.push_hex(value, 32);
                assert_eq!(k.as_str(), format!("{p}{value:032x}"));
                let low = value as u64;
                let mut k = KeyBuf::new();
                k.lit(&p);
                k.push_hex(u128::from(low), 16);
                assert_eq!(k.as_str(), format!("{p}{low:016x}"));
            }
        }
    }

    /// The one-store path must give the very digits `rmp_serde` + XXH3 give, for every integer
    /// type, on both sides of every boundary between MessagePack's forms.
    #[test]
    fn a_default_key_of_one_integer_is_the_serde_keys_digits() {
        fn check<T: serde::Serialize + std::fmt::Debug>(v: T, int: Option<Int>) {
            assert!(int.is_some(), "{v:?} is an integer");
            let mut fast = KeyBuf::new();
            fast.lit("app::get_user:");
            fast.args_hash_or_int(&(&v,), int);
            let mut slow = KeyBuf::new();
            slow.lit("app::get_user:");
            slow.args_hash(&(&v,));
            assert_eq!(
                fast.as_str(),
                slow.as_str(),
                "{} {v:?}",
                std::any::type_name::<T>()
            );
            assert_eq!(fast.lookup_hash(), slow.lookup_hash());
        }
        macro_rules! probe {
            ($v:expr) => {{
                #[allow(unused_imports)]
                use crate::key::{IntViaDisplay as _, IntViaPrimitive as _};
                let v = $v;
                check(v, (&&IntProbe(&v)).int());
            }};
        }
        for v in u8::MIN..=u8::MAX {
            probe!(v);
        }
        for v in i8::MIN..=i8::MAX {
            probe!(v);
        }
        for v in u16::MIN..=u16::MAX {
            probe!(v);
        }
        for v in i16::MIN..=i16::MAX {
            probe!(v);
        }
        let mut wide: Vec<i128> = Vec::new();
        for edge in [
            0i128,
            32,
            128,
            256,
            32_768,
            65_536,
            1 << 31,
            1 << 32,
            1 << 63,
            1 << 64,
        ] {
            for v in [edge - 2, edge - 1, edge, edge + 1] {
                wide.extend([v, -v]);
            }
        }
        let mut rng = 0x5eed_u64;
        for _ in 0..2_000 {
            rng = rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let r = (rng ^ (rng >> 29)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            // Every magnitude, not only huge values: shift by a random amount.
            wide.push(i128::from(r >> (r % 64)));
            wide.push(i128::from((r >> (r % 64)) as i64));
        }
        // Each value as every integer type that can hold it.
        macro_rules! probe_as {
            ($v:ident: $($t:ty),*) => {$(
                if let Ok(v) = <$t>::try_from($v) {
                    probe!(v);
                }
            )*};
        }
        for v in wide {
            probe_as!(v: u32, i32, u64, i64, usize, isize);
        }
    }

    /// A string placeholder escaped straight from the string renders exactly what `Display`
    /// through the escaper renders, for every type the probe takes.
    #[test]
    // The probe's autoref is the mechanism under test, needless only where it finds nothing.
    #[allow(clippy::needless_borrow)]
    fn a_string_placeholder_renders_as_its_display() {
        use std::borrow::Cow;
        use std::rc::Rc;
        use std::sync::Arc;
        fn check<T: KeyPart + std::fmt::Debug + ?Sized>(v: &T, text: Option<&str>) {
            assert!(text.is_some(), "{v:?} is a string");
            let mut fast = KeyBuf::new();
            fast.lit_part_or_int("user:", v, None, text);
            fast.part_or_int(v, None, text);
            let mut slow = KeyBuf::new();
            slow.lit("user:");
            slow.part(v);
            slow.part(v);
            assert_eq!(fast.as_str(), slow.as_str(), "{v:?}");
        }
        macro_rules! probe {
            ($v:expr) => {{
                #[allow(unused_imports)]
                use crate::key::{StrViaDisplay as _, StrViaStr as _};
                let v = $v;
                check(&v, (&&StrProbe(&v)).str());
            }};
        }
        let long = "x".repeat(300);
        for s in [
            "",
            "ada@example.com",
            "a:b",
            "*",
            "user:*",
            "[a-z]?",
            "\\",
            "{x}^",
            "\n\t\0",
            "\u{7f}",
            "é:ü",
            "日本語",
            long.as_str(),
        ] {
            probe!(s);
            probe!(s.to_owned());
            probe!(&s.to_owned());
            probe!(Box::<str>::from(s));
            probe!(Rc::<str>::from(s));
            probe!(Arc::<str>::from(s));
            probe!(Cow::Borrowed(s));
            probe!(Cow::<str>::Owned(s.to_owned()));
            check(s, (&&StrProbe(s)).str());
        }
        // Not strings: the probe says so, and `Display` renders them.
        #[allow(unused_imports)]
        use crate::key::{StrViaDisplay as _, StrViaStr as _};
        assert_eq!((&&StrProbe(&'c')).str(), None);
        assert_eq!((&&StrProbe(&42u8)).str(), None);
        assert_eq!(
            (&&StrProbe(&std::path::Path::new("a").display())).str(),
            None
        );
    }
}
