//! FLUX.2's flow-matching schedule: diffusers' `FlowMatchEulerDiscreteScheduler` as FLUX.2's
//! pipeline drives it (`use_dynamic_shifting`, exponential time shift by `mu` from the image's
//! token count, `compute_empirical_mu` in `pipeline_flux2.py`).

/// FLUX.2's shift `mu` for `image_seq_len` latent tokens and `steps` steps (black-forest-labs
/// flux2 `sampling.py`, copied by diffusers' `compute_empirical_mu`).
pub fn flux2_mu(image_seq_len: usize, steps: usize) -> f64 {
    let (a1, b1) = (8.73809524e-05, 1.89833333);
    let (a2, b2) = (0.00016927, 0.45666666);
    let len = image_seq_len as f64;
    if image_seq_len > 4300 {
        return a2 * len + b2;
    }
    let m_200 = a2 * len + b2;
    let m_10 = a1 * len + b1;
    let a = (m_200 - m_10) / 190.0;
    let b = m_200 - 200.0 * a;
    a * steps as f64 + b
}

/// The `steps + 1` sigmas from 1 down to the terminal 0: `linspace(1, 1/steps, steps)`, each
/// shifted as `e^mu / (e^mu + 1/σ − 1)`.
pub fn flux2_sigmas(image_seq_len: usize, steps: usize) -> Vec<f32> {
    let mu = flux2_mu(image_seq_len, steps);
    let mut v: Vec<f32> = (0..steps)
        .map(|i| {
            let s = if steps == 1 {
                1.0
            } else {
                1.0 + (1.0 / steps as f64 - 1.0) * i as f64 / (steps - 1) as f64
            };
            let s = s as f32 as f64;
            (mu.exp() / (mu.exp() + (1.0 / s - 1.0))) as f32
        })
        .collect();
    v.push(0.0);
    v
}
