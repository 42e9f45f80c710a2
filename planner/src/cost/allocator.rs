//! PyTorch's CUDA caching allocator, replayed over a request's allocations: what the process
//! holds from the device beyond the tensors alive at its peak.
//!
//! A PyTorch stack never returns a freed block to the driver (no `empty_cache` in a serving
//! loop): it keeps it in a pool and hands it out again when a later request fits. A request for
//! more than any cached block holds gets a new segment from `cudaMalloc`, so the pool grows by
//! the sizes the workload's order of allocations could not reuse, not by a fraction. The rules
//! are PyTorch's (`c10/cuda/CUDACachingAllocator.cpp`, pytorch/pytorch at eb42ad6, default
//! configuration, no expandable segments): sizes round up to 512 bytes; requests up to 1 MiB
//! come from 2 MiB segments of the small pool, up to 10 MiB from 20 MiB segments of the large
//! pool, larger ones from a segment of their own size rounded up to 2 MiB; the smallest free
//! block of the pool that fits is taken (best fit, then lowest address) and split when what is
//! left is at least 512 bytes (small pool) or more than 1 MiB (large pool); a freed block merges
//! with its free neighbours in its segment.
//!
//! The trace's liveness carries sizes, not addresses, so a free returns the most recently
//! allocated live block of its size (tensors of one size die in reverse order in a layer's
//! code). One stream is assumed: every allocation of the traces is on the compute stream.

/// Every size rounds up to this (`kMinBlockSize`).
const MIN_BLOCK: u64 = 512;
/// The largest small-pool request (`kSmallSize`).
const SMALL_SIZE: u64 = 1 << 20;
/// A small-pool segment (`kSmallBuffer`).
const SMALL_BUFFER: u64 = 2 << 20;
/// Requests below this share a `LARGE_BUFFER` segment (`kMinLargeAlloc`).
const MIN_LARGE_ALLOC: u64 = 10 << 20;
/// The segment for large requests under `MIN_LARGE_ALLOC` (`kLargeBuffer`).
const LARGE_BUFFER: u64 = 20 << 20;
/// Larger segments round up to this (`kRoundLarge`).
const ROUND_LARGE: u64 = 2 << 20;

/// One block: a piece of a segment, free or handed out.
#[derive(Debug, Clone, Copy)]
struct Block {
    /// Address (segments are laid end to end; only order and adjacency matter).
    addr: u64,
    size: u64,
    small: bool,
    free: bool,
    prev: Option<u32>,
    next: Option<u32>,
}

/// A free block's place in its pool's list: ordered by size, then address.
type FreeKey = (u64, u64, u32);

/// The pool's state: blocks, each pool's free blocks in best-fit order, live blocks in
/// allocation order. A request's pool holds tens of free and live blocks, so sorted vectors
/// beat trees here (the replay runs once per set of stages a plan costs).
#[derive(Debug, Default)]
pub struct CachingAllocator {
    blocks: Vec<Block>,
    /// Free blocks of the small pool, then of the large pool.
    free: [Vec<FreeKey>; 2],
    /// Live blocks: (the size asked for, block), oldest first.
    live: Vec<(u64, u32)>,
    /// Next segment's address.
    top: u64,
    /// Sum of segments (`memory_reserved`).
    pub reserved: u64,
    /// Sum of live blocks (`memory_allocated`).
    pub allocated: u64,
    /// The largest `allocated` so far.
    pub peak_allocated: u64,
}

fn round(n: u64) -> u64 {
    n.max(1).div_ceil(MIN_BLOCK) * MIN_BLOCK
}

fn segment_size(n: u64) -> u64 {
    if n <= SMALL_SIZE {
        SMALL_BUFFER
    } else if n < MIN_LARGE_ALLOC {
        LARGE_BUFFER
    } else {
        n.div_ceil(ROUND_LARGE) * ROUND_LARGE
    }
}

impl CachingAllocator {
    fn key(&self, i: u32) -> (usize, FreeKey) {
        let b = &self.blocks[i as usize];
        (usize::from(!b.small), (b.size, b.addr, i))
    }

    fn insert_free(&mut self, i: u32) {
        let (pool, k) = self.key(i);
        let list = &mut self.free[pool];
        let at = list.binary_search(&k).unwrap_or_else(|at| at);
        list.insert(at, k);
    }

    fn remove_free(&mut self, i: u32) {
        let (pool, k) = self.key(i);
        let list = &mut self.free[pool];
        if let Ok(at) = list.binary_search(&k) {
            list.remove(at);
        }
    }

    /// Allocates `bytes`.
    pub fn alloc(&mut self, bytes: u64) {
        let n = round(bytes);
        let small = n <= SMALL_SIZE;
        let list = &mut self.free[usize::from(!small)];
        let at = list.partition_point(|k| k.0 < n);
        let i = if at < list.len() {
            list.remove(at).2
        } else {
            let size = segment_size(n);
            self.blocks.push(Block {
                addr: self.top,
                size,
                small,
                free: true,
                prev: None,
                next: None,
            });
            self.top += size;
            self.reserved += size;
            (self.blocks.len() - 1) as u32
        };
        let b = self.blocks[i as usize];
        let rest = b.size - n;
        let split = if small {
            rest >= MIN_BLOCK
        } else {
            rest > SMALL_SIZE
        };
        if split {
            let j = self.blocks.len() as u32;
            self.blocks.push(Block {
                addr: b.addr + n,
                size: rest,
                small,
                free: true,
                prev: Some(i),
                next: b.next,
            });
            if let Some(k) = b.next {
                self.blocks[k as usize].prev = Some(j);
            }
            let bi = &mut self.blocks[i as usize];
            bi.next = Some(j);
            bi.size = n;
            self.insert_free(j);
        }
        let bi = &mut self.blocks[i as usize];
        bi.free = false;
        self.allocated += bi.size;
        self.peak_allocated = self.peak_allocated.max(self.allocated);
        self.live.push((bytes, i));
    }

    /// Frees the most recent live block allocated for `bytes`; a size with no live block (a
    /// trace that frees what another stage allocated) is ignored.
    pub fn free(&mut self, bytes: u64) {
        let Some(at) = self.live.iter().rposition(|l| l.0 == bytes) else {
            return;
        };
        let mut i = self.live.remove(at).1;
        let b = &mut self.blocks[i as usize];
        b.free = true;
        self.allocated -= b.size;
        // Merge with a free successor, then into a free predecessor.
        if let Some(j) = self.blocks[i as usize]
            .next
            .filter(|&j| self.blocks[j as usize].free)
        {
            self.remove_free(j);
            self.absorb(i, j);
        }
        if let Some(p) = self.blocks[i as usize]
            .prev
            .filter(|&p| self.blocks[p as usize].free)
        {
            self.remove_free(p);
            self.absorb(p, i);
            i = p;
        }
        self.insert_free(i);
    }

    /// Block `a` takes in its successor `b` (neither in a free list).
    fn absorb(&mut self, a: u32, b: u32) {
        let bb = self.blocks[b as usize];
        let ba = &mut self.blocks[a as usize];
        ba.size += bb.size;
        ba.next = bb.next;
        if let Some(k) = bb.next {
            self.blocks[k as usize].prev = Some(a);
        }
    }

    /// Runs a liveness sequence: a positive entry allocates that many bytes, a negative one
    /// frees them.
    pub fn run(&mut self, liveness: &[i64]) {
        for &x in liveness {
            if x >= 0 {
                self.alloc(x as u64);
            } else {
                self.free(x.unsigned_abs());
            }
        }
    }
}

/// Bytes the pool holds but no tensor uses when a request's allocations peak, in a serving
/// process's steady state: `stages`' liveness run twice (the warm-up request, then the measured
/// one, which finds the pool the first left), the reserved pool less the allocated peak.
pub fn free_at_peak(stages: &[&[i64]]) -> u64 {
    let mut a = CachingAllocator::default();
    for _ in 0..2 {
        for s in stages {
            a.run(s);
        }
    }
    a.reserved.saturating_sub(a.peak_allocated)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: i64 = 1 << 20;

    #[test]
    fn a_freed_block_is_reused_and_the_pool_does_not_grow() {
        let mut a = CachingAllocator::default();
        a.run(&[64 * MIB, -64 * MIB, 64 * MIB, -64 * MIB]);
        assert_eq!(a.reserved, 64 << 20);
        assert_eq!(free_at_peak(&[&[64 * MIB, -64 * MIB]]), 0);
    }

    #[test]
    fn a_larger_request_after_smaller_frees_needs_a_new_segment() {
        // Two 64 MiB blocks freed from two segments cannot serve 100 MiB: PyTorch never merges
        // across segments, so the pool holds 228 MiB, and when the two 64 MiB tensors peak
        // (128 MiB live) the 100 MiB segment sits free.
        let seq = [
            64 * MIB,
            64 * MIB,
            -64 * MIB,
            -64 * MIB,
            100 * MIB,
            -100 * MIB,
        ];
        assert_eq!(free_at_peak(&[&seq]), 100 << 20);
    }

    #[test]
    fn a_block_splits_and_its_halves_merge_again() {
        let mut a = CachingAllocator::default();
        a.run(&[100 * MIB, -100 * MIB, 40 * MIB, 40 * MIB]);
        assert_eq!(
            a.reserved,
            100 << 20,
            "both 40 MiB come out of the 100 MiB segment"
        );
        a.run(&[-40 * MIB, -40 * MIB, 100 * MIB]);
        assert_eq!(
            a.reserved,
            100 << 20,
            "the halves merged back into one block"
        );
    }

    #[test]
    fn small_and_mid_requests_take_pooled_segments() {
        let mut a = CachingAllocator::default();
        a.run(&[1000, 4 * MIB]);
        assert_eq!(a.reserved, (2 << 20) + (20 << 20));
        assert_eq!(a.allocated, 1024 + (4 << 20));
        // The rest of the 20 MiB segment (16 MiB) serves the next mid-size request.
        a.run(&[8 * MIB]);
        assert_eq!(a.reserved, (2 << 20) + (20 << 20));
        // A remainder of 1 MiB or less stays with the block rather than splitting off.
        let mut b = CachingAllocator::default();
        b.run(&[11 * MIB + 1]);
        assert_eq!(
            b.allocated,
            12 << 20,
            "the 2 MiB-rounded segment's 1 MiB tail is kept"
        );
    }
}
