//! A memo of estimates shared by the searches of one command: `fleet` costs every candidate per
//! traffic class and then plans each GPU type alone (the `options` field), asking for the same
//! estimates twice. An estimate is a pure function of its inputs, so a hit returns exactly what a
//! fresh call would, whatever the thread count.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::deployment::Deployment;
use crate::estimate::{Estimate, Inputs, estimate};
use crate::rules::Violation;

/// Estimates already made, by model, GPU, runtime and deployment.
#[derive(Debug, Default)]
pub struct Memo(Mutex<HashMap<String, Result<Estimate, Vec<Violation>>>>);

impl Memo {
    /// `estimate(inp, d)`, computed once per distinct input.
    pub fn estimate(&self, inp: Inputs, d: &Deployment) -> Result<Estimate, Vec<Violation>> {
        // The catalog's ids name a model, GPU and runtime uniquely within one command, and the
        // deployment's Debug form lists every knob.
        let key = format!("{}|{}|{}|{d:?}", inp.model.id, inp.gpu.id, inp.runtime.id);
        if let Some(hit) = self.0.lock().expect("memo lock").get(&key) {
            return hit.clone();
        }
        let e = estimate(inp, d);
        self.0.lock().expect("memo lock").insert(key, e.clone());
        e
    }
}
