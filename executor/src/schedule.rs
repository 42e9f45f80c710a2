//! FLUX.2's flow-matching schedule: diffusers' `FlowMatchEulerDiscreteScheduler` as FLUX.2's
//! pipeline drives it (`use_dynamic_shifting`, exponential time shift by `mu` from the image's
//! token count, `compute_empirical_mu` in `pipeline_flux2.py`).

/// The `steps + 1` sigmas from 1 down to the terminal 0: `linspace(1, 1/steps, steps)`, each
/// shifted as `e^mu / (e^mu + 1/σ − 1)`.
pub fn flux2_sigmas(image_seq_len: usize, steps: usize) -> Vec<f32> {
    let mu = facts::schedule::flux2_mu(image_seq_len as u64, steps as u32);
    let mut v: Vec<f32> = (0..steps)
        .map(|i| {
            let s = if steps == 1 {
                1.0
            } else {
                1.0 + (1.0 / steps as f64 - 1.0) * i as f64 / (steps - 1) as f64
            };
            let s = s as f32 as f64;
            facts::schedule::shift(mu, s) as f32
        })
        .collect();
    v.push(0.0);
    v
}
