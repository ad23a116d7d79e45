//! A stored value: typed on the way in and out, kept in the entry itself when it fits.
//!
//! A hit reads the entry (key, times) and then the value. With the value behind its own
//! allocation (`Arc<dyn Any>`), that second read is a dependent load from another part of the
//! heap: the profiles showed it as the most expensive instruction of a hit, and the 2-thread
//! benchmark ran about 20% faster with values inline. But a map's slots are all one size, so one
//! inline size for everything made a cache of `u64`s more than twice as large. Values therefore
//! come in three size classes, each with its own map (see `MemoryStore`): up to [`SMALL`] bytes
//! (integers, `String`, `Vec`, `Arc<T>`: an entry no larger than the old entry plus its `Arc`), up
//! to [`MEDIUM`] bytes (a small struct of a few strings and numbers) and up to [`LARGE`] bytes (a
//! row-sized struct). Larger values, and the type-erased bytes of a preloaded hot key, stay
//! shared behind an `Arc` in the small class.

use std::any::{Any, TypeId};
use std::mem::{MaybeUninit, align_of, size_of};
use std::sync::Arc;

/// A type-erased shared value: what followers of a single flight receive, and how values larger
/// than the large class are stored.
pub(crate) type Value = Arc<dyn Any + Send + Sync>;

/// The largest value of the small class, stored inline in a small entry.
pub(crate) const SMALL: usize = 24;
/// The largest value of the medium class.
pub(crate) const MEDIUM: usize = 88;
/// The largest value of the large class, stored inline in a large entry.
pub(crate) const LARGE: usize = 184;
/// The largest alignment kept inline; over-aligned types are shared.
const INLINE_ALIGN: usize = 8;

#[repr(C, align(8))]
struct InlineBytes<const N: usize>([MaybeUninit<u8>; N]);

/// What is done with the bytes, per stored type: one static table per type, so an entry carries a
/// pointer rather than three.
struct Ops {
    /// Drops the value in place.
    drop: unsafe fn(*mut u8),
    /// Borrows it as `dyn Any` (for weighers).
    as_any: unsafe fn(*const u8) -> *const (dyn Any + Send + Sync),
    /// A shared copy (for followers and fallbacks).
    share: unsafe fn(*const u8) -> Value,
    /// `size_of` of the value.
    size: usize,
}

/// The operations of a `T` stored inline.
struct InlineOps<T>(std::marker::PhantomData<T>);

impl<T: Clone + Send + Sync + 'static> InlineOps<T> {
    const OPS: Ops = Ops {
        // SAFETY (all three): called only on bytes that `StoredValue::new` wrote a `T` into.
        drop: |p| unsafe { p.cast::<T>().drop_in_place() },
        as_any: |p| p.cast::<T>() as *const (dyn Any + Send + Sync),
        share: |p| Arc::new(unsafe { (*p.cast::<T>()).clone() }),
        size: size_of::<T>(),
    };
}

/// The operations of a shared [`Value`] held in the bytes.
const SHARED_OPS: Ops = Ops {
    // SAFETY (all three): called only on bytes that `StoredValue::shared` wrote a `Value` into.
    drop: |p| unsafe { p.cast::<Value>().drop_in_place() },
    as_any: |p| unsafe { Arc::as_ptr(&*p.cast::<Value>()) },
    share: |p| unsafe { (*p.cast::<Value>()).clone() },
    size: 0,
};

/// A value of any `'static + Send + Sync` type in `N` bytes: inline when it fits, else shared.
/// `repr(C)`: the type comes first, next to the key and times the hit reads before it.
#[repr(C)]
pub(crate) struct StoredValue<const N: usize> {
    /// `TypeId::of::<T>()` of an inline `T`, or of [`Value`] when the bytes hold a shared value.
    /// Kept in the entry (not in `ops`) so a hit checks the type without another load.
    type_id: TypeId,
    bytes: InlineBytes<N>,
    ops: &'static Ops,
}

// SAFETY: the bytes hold either a `T: Send + Sync` (`new` requires it) or a `Value` (which is
// `Send + Sync`); the rest is plain data and a static table.
unsafe impl<const N: usize> Send for StoredValue<N> {}
unsafe impl<const N: usize> Sync for StoredValue<N> {}

/// Whether a `T` is kept inline in `N` bytes.
#[inline(always)]
pub(crate) const fn fits_inline<T, const N: usize>() -> bool {
    size_of::<T>() <= N && align_of::<T>() <= INLINE_ALIGN
}

/// The class of values of up to [`SMALL`] bytes, and of shared values.
pub(crate) const SMALL_CLASS: u64 = 0;
/// The class of values of up to [`MEDIUM`] bytes.
pub(crate) const MEDIUM_CLASS: u64 = 1;
/// The class of values of up to [`LARGE`] bytes.
pub(crate) const LARGE_CLASS: u64 = 2;

/// The size class a `T` is stored in, decided at compile time: the smallest class it fits in
/// inline; the small class (shared) for what fits in none.
#[inline(always)]
pub(crate) const fn class_of<T>() -> u64 {
    if fits_inline::<T, SMALL>() {
        SMALL_CLASS
    } else if fits_inline::<T, MEDIUM>() {
        MEDIUM_CLASS
    } else if fits_inline::<T, LARGE>() {
        LARGE_CLASS
    } else {
        SMALL_CLASS
    }
}

impl<const N: usize> StoredValue<N> {
    const HOLDS_A_SHARED_VALUE: () = assert!(fits_inline::<Value, N>());

    /// Stores `value`: inline when it fits, shared otherwise.
    pub(crate) fn new<T: Clone + Send + Sync + 'static>(value: T) -> Self {
        if !fits_inline::<T, N>() {
            return Self::shared(Arc::new(value));
        }
        let mut bytes = InlineBytes([MaybeUninit::uninit(); N]);
        // SAFETY: `T` fits in the bytes, in size and alignment (checked above); the bytes are
        // dropped as a `T` by `InlineOps::<T>::OPS`.
        unsafe { bytes.0.as_mut_ptr().cast::<T>().write(value) };
        StoredValue {
            type_id: TypeId::of::<T>(),
            ops: &InlineOps::<T>::OPS,
            bytes,
        }
    }

    /// Stores a value that is already shared (a large one, or one whose type is not known here).
    pub(crate) fn shared(value: Value) -> Self {
        #[allow(clippy::let_unit_value)]
        let () = Self::HOLDS_A_SHARED_VALUE;
        let mut bytes = InlineBytes([MaybeUninit::uninit(); N]);
        // SAFETY: a `Value` fits (asserted above); dropped as a `Value` by `SHARED_OPS`.
        unsafe { bytes.0.as_mut_ptr().cast::<Value>().write(value) };
        StoredValue {
            type_id: TypeId::of::<Value>(),
            ops: &SHARED_OPS,
            bytes,
        }
    }

    /// The value, if it is a `T`.
    #[inline(always)]
    pub(crate) fn downcast_ref<T: 'static>(&self) -> Option<&T> {
        if fits_inline::<T, N>() && self.type_id == TypeId::of::<T>() {
            // SAFETY: a `T` is here: only `new::<T>` records `T`'s `TypeId` (when `T` is
            // `Value` itself, both `new` and `shared` wrote a `Value`), and it wrote a `T`.
            return Some(unsafe { &*self.bytes.0.as_ptr().cast::<T>() });
        }
        self.shared_ref()?.downcast_ref::<T>()
    }

    /// The shared value the bytes hold, if they hold one.
    #[inline]
    fn shared_ref(&self) -> Option<&Value> {
        // SAFETY: only `shared` records `Value`'s `TypeId`, and it wrote a `Value`.
        (self.type_id == TypeId::of::<Value>())
            .then(|| unsafe { &*self.bytes.0.as_ptr().cast::<Value>() })
    }

    /// A shared copy: the `Arc` itself for a shared value, a clone in a new `Arc` for an inline
    /// one. Off the hit path (followers, fallbacks).
    pub(crate) fn share(&self) -> Value {
        // SAFETY: `ops` matches what the bytes hold.
        unsafe { (self.ops.share)(self.bytes.0.as_ptr().cast()) }
    }

    /// The value as `dyn Any`, for weighers.
    pub(crate) fn as_any(&self) -> &(dyn Any + Send + Sync) {
        // SAFETY: `ops` matches what the bytes hold; the pointer lives as long as `self`.
        unsafe { &*(self.ops.as_any)(self.bytes.0.as_ptr().cast()) }
    }

    /// `size_of` the value (of the pointee for a shared one).
    pub(crate) fn size(&self) -> usize {
        match self.shared_ref() {
            Some(shared) => std::mem::size_of_val(&**shared),
            None => self.ops.size,
        }
    }
}

impl<const N: usize> Drop for StoredValue<N> {
    fn drop(&mut self) {
        // SAFETY: `ops` matches what the bytes hold, and they are dropped once, here.
        unsafe { (self.ops.drop)(self.bytes.0.as_mut_ptr().cast()) }
    }
}

/// A value on its way into the memory tier, in the class its type belongs to.
pub(crate) enum Stored {
    Small(StoredValue<SMALL>),
    Medium(StoredValue<MEDIUM>),
    Large(StoredValue<LARGE>),
}

impl Stored {
    /// `value` in its type's class (see [`class_of`]).
    pub(crate) fn new<T: Clone + Send + Sync + 'static>(value: T) -> Self {
        match class_of::<T>() {
            MEDIUM_CLASS => Stored::Medium(StoredValue::new(value)),
            LARGE_CLASS => Stored::Large(StoredValue::new(value)),
            _ => Stored::Small(StoredValue::new(value)),
        }
    }

    /// A value already shared, whose type may not be known here: the small class.
    pub(crate) fn shared(value: Value) -> Self {
        Stored::Small(StoredValue::shared(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Counts its drops; 72 bytes, so inline in the large class.
    #[derive(Clone)]
    struct Counted {
        drops: Arc<AtomicUsize>,
        _size: [u64; 8],
    }

    impl Drop for Counted {
        fn drop(&mut self) {
            self.drops.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_small_value_is_inline_and_reads_back_as_its_type_only() {
        let v = StoredValue::<LARGE>::new(String::from("user:42"));
        assert!(fits_inline::<String, SMALL>());
        assert_eq!(
            v.downcast_ref::<String>().map(String::as_str),
            Some("user:42")
        );
        assert!(v.downcast_ref::<u64>().is_none());
        assert!(v.downcast_ref::<Value>().is_none());
        assert_eq!(v.size(), size_of::<String>());
        assert_eq!(
            v.share().downcast_ref::<String>().map(String::as_str),
            Some("user:42")
        );
        assert!(v.as_any().is::<String>());
    }

    #[test]
    fn a_large_value_is_shared_and_reads_back_the_same() {
        let big = [7u8; LARGE + 1];
        assert!(!fits_inline::<[u8; LARGE + 1], LARGE>());
        let v = StoredValue::<LARGE>::new(big);
        assert_eq!(v.downcast_ref::<[u8; LARGE + 1]>(), Some(&big));
        assert!(v.downcast_ref::<u8>().is_none());
        assert_eq!(v.size(), LARGE + 1);
        assert!(v.as_any().is::<[u8; LARGE + 1]>());
        let shared = v.share();
        assert!(Arc::ptr_eq(&shared, &v.share()), "the same Arc, not a copy");
    }

    #[test]
    fn an_over_aligned_value_is_shared() {
        #[derive(Clone, Copy, PartialEq, Debug)]
        #[repr(align(64))]
        struct Aligned(u8);
        assert!(!fits_inline::<Aligned, LARGE>());
        let v = StoredValue::<LARGE>::new(Aligned(3));
        assert_eq!(v.downcast_ref::<Aligned>(), Some(&Aligned(3)));
    }

    #[test]
    fn a_value_given_shared_is_found_by_its_type() {
        let v = StoredValue::<LARGE>::shared(Arc::new(5u32));
        assert_eq!(v.downcast_ref::<u32>(), Some(&5));
        assert!(v.downcast_ref::<u64>().is_none());
        assert_eq!(v.size(), 4);
    }

    #[test]
    fn each_type_has_one_class() {
        for class in [
            class_of::<u64>(),
            class_of::<String>(),
            class_of::<Arc<[u8]>>(),
        ] {
            assert_eq!(class, SMALL_CLASS);
        }
        assert_eq!(class_of::<[u64; 4]>(), MEDIUM_CLASS);
        assert_eq!(class_of::<[u8; MEDIUM]>(), MEDIUM_CLASS);
        assert_eq!(class_of::<[u8; MEDIUM + 1]>(), LARGE_CLASS);
        assert_eq!(class_of::<[u8; LARGE]>(), LARGE_CLASS);
        assert_eq!(class_of::<[u8; LARGE + 1]>(), SMALL_CLASS, "shared");
        assert!(matches!(Stored::new(1u64), Stored::Small(_)));
        assert!(matches!(Stored::new([1u64; 4]), Stored::Medium(_)));
        assert!(matches!(Stored::new([1u64; 16]), Stored::Large(_)));
        assert!(matches!(Stored::new([1u8; 400]), Stored::Small(_)));
        let small = StoredValue::<SMALL>::new(String::from("x"));
        assert_eq!(
            small.downcast_ref::<String>().map(String::as_str),
            Some("x")
        );
        let shared = StoredValue::<SMALL>::new([3u8; 400]);
        assert_eq!(shared.downcast_ref::<[u8; 400]>(), Some(&[3u8; 400]));
    }

    #[test]
    fn every_stored_value_is_dropped_exactly_once() {
        let drops = Arc::new(AtomicUsize::new(0));
        let inline = StoredValue::<LARGE>::new(Counted {
            drops: drops.clone(),
            _size: [0; 8],
        });
        let shared = StoredValue::<LARGE>::shared(Arc::new(Counted {
            drops: drops.clone(),
            _size: [0; 8],
        }));
        let copy = inline.share();
        drop(inline);
        assert_eq!(drops.load(Ordering::SeqCst), 1);
        drop(shared);
        assert_eq!(drops.load(Ordering::SeqCst), 2);
        drop(copy);
        assert_eq!(drops.load(Ordering::SeqCst), 3);
    }
}
