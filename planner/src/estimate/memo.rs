//! The stages one command already costed, by each stage's view of the deployment
//! (`estimate::view`): deployments that differ only in knobs a stage does not read (the text
//! encoder's placement for the denoising loop, the precision for the VAE decode) share that
//! stage. The tables and keys here also hold `crate::memo`'s whole estimates. A stage is a pure
//! function of its inputs, so a hit returns exactly what a fresh call would.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};

use super::{Denoised, Inputs, Stage};
use crate::catalog::RuntimeProfile;
use crate::deployment::Deployment;
use crate::ranges::Category;

/// The multiply-rotate hash of rustc's `FxHasher`: the memo's keys are addresses and small
/// integers made by this process, not attacker-chosen, so SipHash's flooding resistance buys
/// nothing and costs a tenth of a plan.
#[derive(Debug, Default, Clone, Copy)]
struct Fx(u64);

impl Hasher for Fx {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(b));
        }
    }

    fn write_u64(&mut self, x: u64) {
        self.0 = (self.0.rotate_left(5) ^ x).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }

    fn write_u32(&mut self, x: u32) {
        self.write_u64(x as u64);
    }

    fn write_u8(&mut self, x: u8) {
        self.write_u64(x as u64);
    }

    fn write_usize(&mut self, x: usize) {
        self.write_u64(x as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// A map from key to value behind a lock, filled on first use.
#[derive(Debug)]
pub(crate) struct Table<K, V>(Mutex<HashMap<K, V, BuildHasherDefault<Fx>>>);

impl<K, V> Default for Table<K, V> {
    fn default() -> Self {
        Table(Mutex::new(HashMap::default()))
    }
}

impl<K: Hash + Eq, V: Clone> Table<K, V> {
    /// The value at `key`, computed by `f` (outside the lock) when absent. Two threads that
    /// compute the same key both return the value stored first, so every caller shares what
    /// the table holds (a stage's liveness, which `StageMemo::pool_free` knows by address).
    pub(crate) fn get_or(&self, key: K, f: impl FnOnce() -> V) -> V {
        if let Some(hit) = self.0.lock().expect("memo lock").get(&key) {
            return hit.clone();
        }
        let v = f();
        self.0
            .lock()
            .expect("memo lock")
            .entry(key)
            .or_insert(v)
            .clone()
    }
}

/// The key of one deployment (or a stage's view of it) on one model, GPU and runtime, each
/// compared by address: the memo borrows them, so no other one can take their place while it
/// lives, and two catalog entries with one id (a user's runtime profile named like a built-in
/// one) stay apart.
pub(crate) type Key = (usize, usize, usize, Deployment);

pub(crate) fn key(inp: Inputs, d: &Deployment) -> Key {
    let addr = |p: *const u8| p as usize;
    (
        addr(std::ptr::from_ref(inp.model).cast()),
        addr(std::ptr::from_ref(inp.gpu).cast()),
        addr(std::ptr::from_ref(inp.runtime).cast()),
        d.clone(),
    )
}

/// Stages already costed, by the stage's view of the deployment (`estimate::view`).
#[derive(Debug, Default)]
pub struct StageMemo<'c> {
    lifetime: PhantomData<&'c ()>,
    text_encoder: Table<Key, Stage>,
    denoise: Table<Key, Denoised>,
    vae_decode: Table<Key, Stage>,
    ranges: Table<Key, (Category, String)>,
    /// Every stage's liveness, one copy per content: stages of different views that allocate
    /// alike share it.
    liveness: Table<Arc<[i64]>, Arc<[i64]>>,
    /// The caching allocator's free pool of a request, by the addresses of its stages' shared
    /// liveness (`liveness` holds them, so no address is reused while the memo lives).
    pools: Table<[usize; 3], u64>,
}

impl<'c> StageMemo<'c> {
    /// The text-encoder stage of `view`, costed by `f` once.
    pub(crate) fn text_encoder(
        &self,
        inp: Inputs<'c>,
        view: &Deployment,
        f: fn(Inputs, &Deployment) -> Stage,
    ) -> Stage {
        self.text_encoder
            .get_or(key(inp, view), || self.shared(f(inp, view)))
    }

    /// The denoising loop of `view`, costed by `f` once.
    pub(crate) fn denoise(
        &self,
        inp: Inputs<'c>,
        view: &Deployment,
        f: fn(Inputs, &Deployment) -> Denoised,
    ) -> Denoised {
        self.denoise.get_or(key(inp, view), || {
            let mut d = f(inp, view);
            d.stage = self.shared(d.stage);
            d
        })
    }

    /// The VAE decode of `view`, costed by `f` once.
    pub(crate) fn vae_decode(
        &self,
        inp: Inputs<'c>,
        view: &Deployment,
        f: fn(Inputs, &Deployment) -> Stage,
    ) -> Stage {
        self.vae_decode
            .get_or(key(inp, view), || self.shared(f(inp, view)))
    }
}

impl<'c> StageMemo<'c> {
    /// `s` with its liveness replaced by the memo's copy of the same content.
    fn shared(&self, mut s: Stage) -> Stage {
        let l = s.liveness.clone();
        s.liveness = self.liveness.get_or(l.clone(), || l);
        s
    }

    /// What the caching allocator holds free at the peak of `stages` (this memo's own, run in
    /// order; `estimate::pool_free_bytes`), replayed once per set of stages.
    pub(crate) fn pool_free(&self, rt: &RuntimeProfile, stages: &[&Stage]) -> u64 {
        if !rt.caching_allocator {
            return 0;
        }
        let mut key = [0; 3];
        for (k, s) in key.iter_mut().zip(stages) {
            *k = Arc::as_ptr(&s.liveness).cast::<i64>() as usize;
        }
        self.pools
            .get_or(key, || super::pool_free_bytes(rt, stages.iter().copied()))
    }

    /// The range category and basis of `view` (`estimate::view::ranges`), from `f` once.
    pub(crate) fn ranges(
        &self,
        inp: Inputs<'c>,
        view: &Deployment,
        f: impl FnOnce() -> (Category, String),
    ) -> (Category, String) {
        self.ranges.get_or(key(inp, view), f)
    }
}
