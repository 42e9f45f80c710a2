//! Chunked data parallelism on scoped threads for host-side work on klein-sized tensors
//! (billions of values), with results independent of the thread count.

/// Values per chunk; chunk `i` always covers the same elements, whatever the thread count.
pub const CHUNK: usize = 1 << 20;

/// Calls `f(chunk_index, chunk)` for every `CHUNK`-sized piece of `out`, spread over the
/// available cores. Small slices run on the calling thread.
pub fn for_chunks<T: Send>(out: &mut [T], f: impl Fn(usize, &mut [T]) + Sync) {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    if out.len() <= CHUNK || threads == 1 {
        for (i, c) in out.chunks_mut(CHUNK).enumerate() {
            f(i, c);
        }
        return;
    }
    let chunks: Vec<(usize, &mut [T])> = out.chunks_mut(CHUNK).enumerate().collect();
    let per = chunks.len().div_ceil(threads);
    let mut groups: Vec<Vec<(usize, &mut [T])>> = Vec::new();
    let mut it = chunks.into_iter().peekable();
    while it.peek().is_some() {
        groups.push(it.by_ref().take(per).collect());
    }
    std::thread::scope(|s| {
        for group in groups {
            let f = &f;
            s.spawn(move || {
                for (i, c) in group {
                    f(i, c);
                }
            });
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_element_is_visited_once_with_its_chunk_index() {
        let mut v = vec![0usize; 3 * CHUNK + 5];
        for_chunks(&mut v, |i, c| c.iter_mut().for_each(|x| *x += i + 1));
        assert!(v[..CHUNK].iter().all(|&x| x == 1));
        assert!(v[3 * CHUNK..].iter().all(|&x| x == 4));
    }
}
