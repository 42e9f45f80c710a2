//! Memos of the estimates one command makes. `fleet` costs every candidate per traffic class and
//! then plans each GPU type alone (the `options` field), asking for the same estimates twice; and
//! deployments that differ only in knobs a stage does not read (the text encoder's placement for
//! the denoising loop, the precision for the VAE decode) share that stage. An estimate and a stage
//! are pure functions of their inputs, so a hit returns exactly what a fresh call would, whatever
//! the thread count.

use std::collections::HashMap;
use std::hash::Hash;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};

use crate::deployment::Deployment;
use crate::estimate::{Estimate, Inputs, Stage, estimate_in};
use crate::rules::Violation;

/// A map from key to value behind a lock, filled on first use.
#[derive(Debug)]
struct Table<K, V>(Mutex<HashMap<K, V>>);

impl<K, V> Default for Table<K, V> {
    fn default() -> Self {
        Table(Mutex::new(HashMap::new()))
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

/// Estimates already made, by model, GPU, runtime and deployment, and the stages they share.
#[derive(Debug, Default)]
pub struct Memo<'c> {
    estimates: Table<Key, Result<Arc<Estimate>, Vec<Violation>>>,
    stages: StageMemo<'c>,
}

impl<'c> Memo<'c> {
    /// `estimate(inp, d)`, computed once per distinct input (shared, not copied, by the
    /// candidates that ask for it).
    pub fn estimate(
        &self,
        inp: Inputs<'c>,
        d: &Deployment,
    ) -> Result<Arc<Estimate>, Vec<Violation>> {
        self.estimates.get_or(key(inp, d), || {
            estimate_in(inp, d, &self.stages).map(Arc::new)
        })
    }
}
