//! Where multi-GPU parallelism plugs into the graphs: sequence-parallel (Ulysses) exchanges around
//! attention, behind a trait whose only implementation today is a single rank.
//!
//! With Ulysses degree P each rank holds `tokens / P` of every sequence between blocks; before
//! attention an all-to-all regroups the activations so each rank holds all tokens of `heads / P`
//! heads, and after attention the inverse exchange restores the token split. Ring attention would
//! instead pass K/V blocks around the ring inside `attention`, and HSDP would all-gather each
//! block's weights before use. A multi-GPU implementation needs NCCL (cudarc's `nccl` feature) and
//! one backend per device; none exists yet, so [`crate::RunConfig::gpus`] must be 1.

use crate::Result;
use crate::backend::Backend;

/// The exchanges a sequence-parallel transformer needs around each attention call.
pub trait SequenceParallel<B: Backend> {
    /// Ranks in the group (the Ulysses degree).
    fn degree(&self) -> usize;
    /// `[b, tokens / P, heads, d]` on each rank → `[b, tokens, heads / P, d]` (all-to-all).
    fn tokens_to_heads(&self, b: &B, x: &B::Tensor) -> Result<B::Tensor>;
    /// The inverse exchange after attention.
    fn heads_to_tokens(&self, b: &B, x: &B::Tensor) -> Result<B::Tensor>;
}

/// Degree 1: every exchange is the identity (a shared view, no copy, nothing allocated).
#[derive(Debug, Clone, Copy, Default)]
pub struct SingleRank;

impl<B: Backend> SequenceParallel<B> for SingleRank {
    fn degree(&self) -> usize {
        1
    }

    fn tokens_to_heads(&self, _b: &B, x: &B::Tensor) -> Result<B::Tensor> {
        Ok(x.clone())
    }

    fn heads_to_tokens(&self, _b: &B, x: &B::Tensor) -> Result<B::Tensor> {
        Ok(x.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::HostTensor;
    use crate::cpu::CpuBackend;

    #[test]
    fn a_single_rank_exchanges_nothing_and_allocates_nothing() {
        let b = CpuBackend::new();
        let x = b
            .upload(&HostTensor::new(
                &[1, 3, 2, 4],
                (0..24).map(|v| v as f32).collect(),
            ))
            .unwrap();
        let before = b.memory().allocated_bytes;
        let sp: &dyn SequenceParallel<CpuBackend> = &SingleRank;
        let y = sp
            .heads_to_tokens(&b, &sp.tokens_to_heads(&b, &x).unwrap())
            .unwrap();
        assert_eq!(sp.degree(), 1);
        assert_eq!(b.memory().allocated_bytes, before);
        assert_eq!(b.download(&y).unwrap(), b.download(&x).unwrap());
    }
}
