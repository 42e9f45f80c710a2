//! Why no candidate is feasible: the binding constraint, its figures and the nearest relaxation.

use super::*;

pub(super) fn infeasibility(
    s: &Spec,
    n: &Searched,
    best_latency: Option<&Candidate>,
    best_rate: Option<&Candidate>,
    best_memory: Option<(u64, u64, String, Deployment)>,
) -> Infeasible {
    let none = Infeasible {
        binding: Constraint::Illegal,
        quantity: None,
        limit: None,
        gpu: None,
        deployment: None,
        images_per_s: None,
        relax: Vec::new(),
    };
    if n.candidates == n.illegal {
        return Infeasible {
            relax: vec![
                Relaxation::Allow { name: "weights" },
                Relaxation::Allow { name: "offload" },
            ],
            ..none
        };
    }
    if n.out_of_memory + n.illegal == n.candidates {
        let (peak, cap, gpu, d) = best_memory.expect("a candidate ran out of memory");
        return Infeasible {
            binding: Constraint::Memory,
            quantity: Some(Quantity::PeakBytes(peak)),
            limit: Some(Quantity::CapacityBytes(cap)),
            gpu: Some(gpu),
            deployment: Some(d),
            relax: vec![
                Relaxation::GpuMemory {
                    min_capacity_bytes: peak,
                },
                Relaxation::Allow { name: "offload" },
                Relaxation::Allow { name: "weights" },
                Relaxation::Allow { name: "vae_tiling" },
                Relaxation::Allow {
                    name: "max_gpus_per_replica",
                },
            ],
            ..none
        };
    }
    if let Some(b) = best_latency
        && let Some((_, which, got, target)) = worst_miss(b)
    {
        return Infeasible {
            binding: Constraint::Latency,
            quantity: Some(Quantity::latency(which, got)),
            limit: Some(Quantity::latency(which, target)),
            gpu: Some(b.gpu.clone()),
            deployment: Some(b.deployment.clone()),
            relax: vec![if which == "p50" {
                Relaxation::P50LatencyMs { value: got.ceil() }
            } else {
                Relaxation::P99LatencyMs { value: got.ceil() }
            }],
            ..none
        };
    }
    let mut relax = Vec::new();
    let mut out = Infeasible {
        binding: Constraint::Availability,
        images_per_s: s.goal.images_per_s,
        ..none
    };
    if let Some(b) = best_rate {
        let available = s
            .fleet
            .iter()
            .find(|f| f.gpu.id == b.gpu)
            .map(|f| f.available)
            .unwrap_or(0);
        let max = (available / b.deployment.parallel.gpus) as f64 * b.replica_images_per_s;
        relax.push(Relaxation::Available {
            gpu: b.gpu.clone(),
            value: b.gpus,
        });
        // Round down, so the lowered goal is one the fleet meets.
        relax.push(Relaxation::ImagesPerS {
            value: (max * 100.0).floor() / 100.0,
        });
        out.quantity = Some(Quantity::Gpus(b.gpus));
        out.limit = Some(Quantity::Gpus(available));
        out.gpu = Some(b.gpu.clone());
        out.deployment = Some(b.deployment.clone());
    }
    Infeasible { relax, ..out }
}
