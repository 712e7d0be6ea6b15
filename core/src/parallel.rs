//! One map over a slice, on every core with the `parallel` feature and in turn without it:
//! the classes of a fit, the predictors of a batch evaluation.

use alloc::vec::Vec;

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
