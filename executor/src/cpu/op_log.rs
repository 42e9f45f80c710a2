//! A per-op timing log of the CPU backend, for checking the cost model op by op: while it is on
//! (this thread), each op's output records its name, output shape and the CPU time since the
//! previous record (the op itself plus the frees and host logic before it). Off by default;
//! nothing is timed then.

use std::cell::RefCell;

use super::CpuMark;

/// One op.
#[derive(Debug, Clone, PartialEq)]
pub struct OpRecord {
    /// The backend method (`linear`, `rms_norm`, ...), or `mark` for a timeline mark.
    pub op: &'static str,
    /// Its output's shape (a GEMM's `[m, k, n]`).
    pub shape: Vec<usize>,
    /// CPU nanoseconds since the previous record.
    pub ns: u64,
}

thread_local! {
    static LOG: RefCell<Option<(u64, Vec<OpRecord>)>> = const { RefCell::new(None) };
}

/// Starts (or restarts) the log on this thread.
pub fn start() {
    LOG.with(|l| *l.borrow_mut() = Some((CpuMark::now().0, Vec::new())));
}

/// Stops the log and returns what it recorded.
pub fn take() -> Vec<OpRecord> {
    LOG.with(|l| l.borrow_mut().take().map(|(_, v)| v).unwrap_or_default())
}

pub(super) fn record(op: &'static str, shape: &[usize]) {
    LOG.with(|l| {
        if let Some((last, v)) = l.borrow_mut().as_mut() {
            let now = CpuMark::now().0;
            v.push(OpRecord {
                op,
                shape: shape.to_vec(),
                ns: now.saturating_sub(*last),
            });
            *last = now;
        }
    });
}
