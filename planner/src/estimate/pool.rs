//! The caching allocator's free pool of a request (`cost::allocator` replayed over its stages'
//! liveness), answered from a per-thread table by the stages' contents.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use super::Stage;
use crate::catalog::RuntimeProfile;

/// What PyTorch's caching allocator holds free at the peak of a serving process running
/// `stages` in order, request after request (0 for a stack without it): the stages' liveness
/// replayed by `cost::allocator`.
pub fn pool_free_bytes<'s>(
    rt: &RuntimeProfile,
    stages: impl IntoIterator<Item = &'s Stage>,
) -> u64 {
    if !rt.caching_allocator {
        return 0;
    }
    let key: Vec<Arc<[i64]>> = stages.into_iter().map(|s| s.liveness.clone()).collect();
    // A pure function of the stages' contents, answered from a per-thread table (a fit or a
    // fleet costs the same stages again and again, each time through a fresh memo), bounded
    // by clearing it when full: a hit is what a fresh replay returns.
    thread_local! {
        static POOLS: RefCell<HashMap<Vec<Arc<[i64]>>, u64>> =
            RefCell::default();
    }
    if let Some(hit) = POOLS.with(|t| t.borrow().get(&key).copied()) {
        return hit;
    }
    let seqs: Vec<&[i64]> = key.iter().map(|s| &**s).collect();
    let v = crate::cost::allocator::free_at_peak(&seqs);
    POOLS.with(|t| {
        let mut t = t.borrow_mut();
        if t.len() >= POOL_TABLE_ENTRIES {
            t.clear();
        }
        t.insert(key, v);
    });
    v
}

/// Entries the per-thread table of replayed pools holds before it starts again.
const POOL_TABLE_ENTRIES: usize = 4096;
