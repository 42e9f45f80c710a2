//! A trace's memory: every tensor an op creates is allocated, and freed where the runtime drops
//! its last reference, so the peak is the largest sum of live bytes. Buffers held across steps
//! (a cache's residuals) are live like any tensor and counted apart. The sizes, in order, are
//! kept too (`liveness`): the caching allocator's replay (`cost::allocator`) reads them.

/// A live tensor: its size, to be returned by `free`.
#[derive(Debug)]
#[must_use = "a tensor that is never freed stays live to the end of the stage"]
pub struct Buf(pub(super) u64);

impl Buf {
    /// Size in bytes.
    pub fn bytes(&self) -> u64 {
        self.0
    }
}

/// Live, peak and held bytes, and every allocation (+bytes) and free (-bytes) in order.
#[derive(Debug, Clone, Default)]
pub(super) struct Memory {
    pub live: u64,
    pub peak: u64,
    pub held: u64,
    pub liveness: Vec<i64>,
}

impl Memory {
    #[inline]
    pub fn alloc(&mut self, bytes: u64) {
        self.liveness.push(bytes as i64);
        self.live += bytes;
        self.peak = self.peak.max(self.live);
    }

    #[inline]
    pub fn free(&mut self, bytes: u64) {
        self.liveness.push(-(bytes as i64));
        self.live -= bytes;
    }

    pub fn hold(&mut self, bytes: u64) {
        self.held += bytes;
        self.alloc(bytes);
    }

    pub fn release(&mut self, bytes: u64) {
        self.held -= bytes;
        self.free(bytes);
    }
}
