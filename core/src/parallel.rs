//! One map over a slice, on every core with the `parallel` feature and in turn without it:
//! the classes of a fit, the predictors of a batch evaluation, the row blocks of a training
//! epoch.

#[cfg(feature = "alloc")]
use alloc::vec::Vec;

/// `items.map(f).sum()`, the items on rayon's pool with the `parallel` feature. The results
/// are added in the items' order either way, so the sum does not depend on the threads.
pub(crate) fn sum<T: Send>(items: impl Iterator<Item = T>, f: impl Fn(T) -> f64 + Sync + Send) -> f64 {
    #[cfg(feature = "parallel")]
    {
        map_owned(items.collect(), f).into_iter().sum()
    }
    #[cfg(not(feature = "parallel"))]
    {
        items.map(f).sum()
    }
}

#[cfg(feature = "alloc")]
/// `items.iter().map(f).collect()`, on rayon's pool with the `parallel` feature. The order of
/// the results is the order of `items` either way.
pub(crate) fn map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync + Send) -> Vec<R> {
    #[cfg(feature = "parallel")]
    {
        use rayon::prelude::*;
        items.par_iter().map(f).collect()
    }
    #[cfg(not(feature = "parallel"))]
    {
        items.iter().map(f).collect()
    }
}

#[cfg(feature = "alloc")]
/// `items.iter_mut().map(f).collect()`, on rayon's pool with the `parallel` feature.
pub(crate) fn map_mut<T: Send, R: Send>(items: &mut [T], f: impl Fn(&mut T) -> R + Sync + Send) -> Vec<R> {
    #[cfg(feature = "parallel")]
    {
        use rayon::prelude::*;
        items.par_iter_mut().map(f).collect()
    }
    #[cfg(not(feature = "parallel"))]
    {
        items.iter_mut().map(f).collect()
    }
}

#[cfg(feature = "alloc")]
/// `items.into_iter().map(f).collect()`, on rayon's pool with the `parallel` feature.
pub(crate) fn map_owned<T: Send, R: Send>(items: Vec<T>, f: impl Fn(T) -> R + Sync + Send) -> Vec<R> {
    #[cfg(feature = "parallel")]
    {
        use rayon::prelude::*;
        items.into_par_iter().map(f).collect()
    }
    #[cfg(not(feature = "parallel"))]
    {
        items.into_iter().map(f).collect()
    }
}

#[cfg(feature = "alloc")]
/// [`map`] with a state made by `init` and reused across items (scratch buffers): one per
/// rayon worker with the `parallel` feature, one in all without it. `f` must not let the
/// state change its results.
pub(crate) fn map_init<T: Sync, S, R: Send>(
    items: &[T],
    init: impl Fn() -> S + Sync + Send,
    f: impl Fn(&mut S, &T) -> R + Sync + Send,
) -> Vec<R> {
    #[cfg(feature = "parallel")]
    {
        use rayon::prelude::*;
        items.par_iter().map_init(init, f).collect()
    }
    #[cfg(not(feature = "parallel"))]
    {
        let mut state = init();
        items.iter().map(|t| f(&mut state, t)).collect()
    }
}
