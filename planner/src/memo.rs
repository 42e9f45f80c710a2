//! Memos of the estimates one command makes. `fleet` costs every candidate per traffic class and
//! then plans each GPU type alone (the `options` field), asking for the same estimates twice; and
//! deployments that differ only in knobs a stage does not read (the text encoder's placement for
//! the denoising loop, the precision for the VAE decode) share that stage. An estimate and a stage
//! are pure functions of their inputs, so a hit returns exactly what a fresh call would, whatever
//! the thread count.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};

use crate::deployment::Deployment;
use crate::estimate::{Estimate, Inputs, Stage, estimate_in};
use crate::ranges::Category;
use crate::rules::Violation;

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
struct Table<K, V>(Mutex<HashMap<K, V, BuildHasherDefault<Fx>>>);

impl<K, V> Default for Table<K, V> {
    fn default() -> Self {
        Table(Mutex::new(HashMap::default()))
    }
}

impl<K: Hash + Eq, V: Clone> Table<K, V> {
    /// The value at `key`, computed by `f` (outside the lock) when absent.
    fn get_or(&self, key: K, f: impl FnOnce() -> V) -> V {
        if let Some(hit) = self.0.lock().expect("memo lock").get(&key) {
            return hit.clone();
        }
        let v = f();
        self.0.lock().expect("memo lock").insert(key, v.clone());
        v
    }
}

/// The key of one deployment (or a stage's view of it) on one model, GPU and runtime, each
/// compared by address: the memo borrows them, so no other one can take their place while it
/// lives, and two catalog entries with one id (a user's runtime profile named like a built-in
/// one) stay apart.
type Key = (usize, usize, usize, Deployment);

fn key(inp: Inputs, d: &Deployment) -> Key {
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
    denoise: Table<Key, crate::estimate::Denoised>,
    vae_decode: Table<Key, Stage>,
    ranges: Table<Key, (Category, String)>,
}

impl<'c> StageMemo<'c> {
    /// The text-encoder stage of `view`, costed by `f` once.
    pub(crate) fn text_encoder(
        &self,
        inp: Inputs<'c>,
        view: &Deployment,
        f: fn(Inputs, &Deployment) -> Stage,
    ) -> Stage {
        self.text_encoder.get_or(key(inp, view), || f(inp, view))
    }

    /// The denoising loop of `view`, costed by `f` once.
    pub(crate) fn denoise(
        &self,
        inp: Inputs<'c>,
        view: &Deployment,
        f: fn(Inputs, &Deployment) -> crate::estimate::Denoised,
    ) -> crate::estimate::Denoised {
        self.denoise.get_or(key(inp, view), || f(inp, view))
    }

    /// The VAE decode of `view`, costed by `f` once.
    pub(crate) fn vae_decode(
        &self,
        inp: Inputs<'c>,
        view: &Deployment,
        f: fn(Inputs, &Deployment) -> Stage,
    ) -> Stage {
        self.vae_decode.get_or(key(inp, view), || f(inp, view))
    }
}

impl<'c> StageMemo<'c> {
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

/// Estimates already made, by model, GPU, runtime and deployment, and the stages they share.
#[derive(Debug, Default)]
pub struct Memo<'c> {
    /// Whether whole estimates are kept (`fleet` asks for each twice); `plan` asks once per
    /// deployment, so it shares stages only.
    keep_estimates: bool,
    estimates: Table<Key, Result<Arc<Estimate>, Vec<Violation>>>,
    stages: StageMemo<'c>,
}

impl<'c> Memo<'c> {
    /// A memo that keeps whole estimates as well as stages (for commands that ask twice).
    pub fn keeping_estimates() -> Memo<'c> {
        Memo {
            keep_estimates: true,
            ..Memo::default()
        }
    }

    /// `estimate(inp, d)`, computed once per distinct input when estimates are kept (shared, not copied, by the
    /// candidates that ask for it).
    pub fn estimate(
        &self,
        inp: Inputs<'c>,
        d: &Deployment,
    ) -> Result<Arc<Estimate>, Vec<Violation>> {
        if !self.keep_estimates {
            return estimate_in(inp, d, &self.stages).map(Arc::new);
        }
        self.estimates.get_or(key(inp, d), || {
            estimate_in(inp, d, &self.stages).map(Arc::new)
        })
    }
}
