//! What `fleet` returns: plain data (numbers, ids, typed reasons); the binary renders it.

use serde::Serialize;

use super::queueing::Percentiles;
use crate::deployment::{Deployment, Resolution};
use crate::search::{Candidate, Infeasible};
use crate::spec::{Goal, Share};

/// A class served by a pool.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PoolClass {
    /// Image size.
    pub size: Resolution,
    /// Fraction of the class's traffic this pool serves.
    pub share: f64,
    /// Images per second this pool serves of it.
    pub images_per_s: f64,
    /// Service time of one batch of it, milliseconds.
    pub batch_ms: f64,
}

/// One pool of identical replicas.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Pool {
    /// GPU type.
    pub gpu: String,
    /// GPUs in the pool.
    pub count: u32,
    /// Replicas.
    pub replicas: u32,
    /// GPUs per replica.
    pub gpus_per_replica: u32,
    /// The full deployment of a replica (resolution: the first class it serves).
    pub deployment: Deployment,
    /// Classes it serves.
    pub classes: Vec<PoolClass>,
    /// Busy fraction of its replicas at the planned load.
    pub utilization: f64,
    /// USD per hour of the pool.
    pub usd_per_hour: f64,
}

/// Latency targets of a class (absent: none set).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Target {
    /// Median, milliseconds.
    pub p50_ms: Option<f64>,
    /// 99th percentile, milliseconds.
    pub p99_ms: Option<f64>,
}

/// A class's latency percentiles at the point estimate and at the goal's confidence (service
/// times at that quantile of the model's error: what `meets_target` is judged on).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Figures {
    /// Median at the point estimate, milliseconds.
    pub p50_ms: f64,
    /// 99th percentile at the point estimate, milliseconds.
    pub p99_ms: f64,
    /// Median at the confidence, milliseconds.
    pub p50_ms_at_confidence: f64,
    /// 99th percentile at the confidence, milliseconds.
    pub p99_ms_at_confidence: f64,
}

impl Figures {
    /// Point and confidence percentiles side by side (both present, else none).
    pub fn of(point: Option<Percentiles>, conf: Option<Percentiles>) -> Option<Figures> {
        Some(Figures {
            p50_ms: point?.p50_ms,
            p99_ms: point?.p99_ms,
            p50_ms_at_confidence: conf?.p50_ms,
            p99_ms_at_confidence: conf?.p99_ms,
        })
    }

    /// The percentiles at the confidence.
    pub fn at_confidence(&self) -> Percentiles {
        Percentiles {
            p50_ms: self.p50_ms_at_confidence,
            p99_ms: self.p99_ms_at_confidence,
        }
    }
}

/// One traffic class against its targets.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassReport {
    /// Image size.
    pub size: Resolution,
    /// Requests (images) per second.
    pub images_per_s: f64,
    /// Its targets.
    pub target: Target,
    /// The queueing model's prediction (the worst pool serving it).
    pub predicted: Option<Figures>,
    /// The simulation's.
    pub simulated: Option<Figures>,
    /// USD per 1,000 images of the class (its pools' cost split by busy time).
    pub usd_per_1000_images: Option<f64>,
    /// Whether prediction and simulation both meet every target.
    pub meets_target: bool,
}

/// One GPU type serving everything alone.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Homogeneous {
    /// GPU type.
    pub gpu: String,
    /// Its cheapest fleet's cost, when it can serve every class.
    pub total_usd_per_hour: Option<f64>,
    /// GPUs of that fleet.
    pub gpus: Option<u32>,
    /// Why it cannot.
    pub reason: Option<String>,
    /// When the time limit stopped its program before optimality was proven: the gap to the
    /// linear relaxation (its cost is at most this fraction above the best). Absent when proven.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gap: Option<f64>,
}

/// How the integer program went.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SolverReport {
    /// `optimal`, `time_limit` or `infeasible`.
    pub status: &'static str,
    /// Relative gap to the best bound (0 when proven optimal; absent when unknown).
    pub gap: Option<f64>,
    /// Candidates given to the program (after pruning dominated ones).
    pub candidates: usize,
    /// Deployments enumerated before legality, memory and dominance pruning.
    pub enumerated: usize,
    /// Wall time of the whole `fleet` call, milliseconds; filled by the binary with
    /// `--timings` (absent otherwise, so the output stays byte-identical between runs).
    pub ms: Option<f64>,
    /// Times the program was re-solved with tightened rates because a pool missed a target in
    /// the queueing model or the simulation.
    pub repairs: u32,
    /// The backend.
    pub backend: &'static str,
}

/// The fleet at a multiple of the traffic (queueing model only, not simulated).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sensitivity {
    /// Multiple of every class's rate.
    pub traffic_factor: f64,
    /// Images per second in all.
    pub images_per_s: f64,
    /// Its cost, when feasible.
    pub total_usd_per_hour: Option<f64>,
    /// Its pools.
    pub pools: Vec<Pool>,
    /// Why none exists.
    pub infeasible: Option<FleetInfeasible>,
}

/// Why no fleet meets the goal.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FleetInfeasible {
    /// The class that cannot be served, when one is to blame.
    pub class: Option<Resolution>,
    /// `latency`, `memory`, `availability`, `rate` or `simulation`.
    pub constraint: &'static str,
    /// The reason in numbers.
    pub reason: String,
    /// The nearest feasible relaxation.
    pub relaxation: String,
}

/// A capacity plan under load.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FleetPlan {
    /// Schema version.
    pub schema_version: u32,
    /// Model id.
    pub model: String,
    /// Runtime id.
    pub runtime: String,
    /// Goal.
    pub goal: Goal,
    /// Traffic mix (classes as written).
    pub mix: Vec<Share>,
    /// Whether the fleet meets every class's targets, predicted and simulated.
    pub meets_targets: bool,
    /// USD per hour of the chosen fleet.
    pub total_usd_per_hour: Option<f64>,
    /// Its pools.
    pub pools: Vec<Pool>,
    /// Every class against its targets.
    pub classes: Vec<ClassReport>,
    /// Per GPU type, its cheapest fleet alone (or why none).
    pub homogeneous_alternatives: Vec<Homogeneous>,
    /// The integer program.
    pub solver: SolverReport,
    /// The fleet at twice the traffic.
    pub sensitivity: Option<Sensitivity>,
    /// Why no fleet exists, when none does.
    pub infeasible: Option<FleetInfeasible>,
    /// v1: per GPU type, the best single deployment by `plan`'s judging (kept for
    /// compatibility; the pools above are the capacity plan).
    pub options: Vec<FleetOption>,
}

/// v1: one GPU type's best single deployment by `plan`'s judging.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FleetOption {
    /// GPU type.
    pub gpu: String,
    /// Its best deployment for the goal, with replica and GPU counts.
    pub candidate: Option<Candidate>,
    /// Why it cannot meet the goal.
    pub infeasible: Option<Infeasible>,
}
