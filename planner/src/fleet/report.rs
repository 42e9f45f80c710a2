//! What `fleet` returns: plain data (numbers, ids, typed reasons); the binary renders it.

use serde::Serialize;

use super::queueing::Percentiles;
use crate::deployment::{Deployment, Resolution};
use crate::search::{Candidate, Infeasible, Quantity};
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
    /// The stages it runs: `all` (co-located), or one role of stage pools
    /// (`allow.disaggregate`).
    pub role: super::pools::roles::Role,
    /// Stage pools: what one request moves in and out of it over the network.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transfer: Option<super::pools::Transfer>,
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
    /// Why it cannot (typed; the JSON's `reason` is its sentence).
    pub infeasible: Option<FleetInfeasible>,
    /// When the time limit stopped its program before optimality was proven: the gap to the
    /// linear relaxation (its cost is at most this fraction above the best). Absent when proven.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gap: Option<f64>,
    /// Whether the figures above are stage pools of this type (`allow.disaggregate`, cheaper
    /// than its co-located replicas); absent when they are co-located.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub disaggregated: bool,
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
    /// Whether its pools split the stages (`allow.disaggregate`, cheaper than co-located);
    /// absent when they do not.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub disaggregated: bool,
}

/// The constraint that rules every fleet out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FleetConstraint {
    /// A class misses its targets on every deployment even unloaded.
    Latency,
    /// A class fits on no deployment.
    Memory,
    /// Every class can be served, but not all at once with the GPUs available.
    Availability,
    /// A class has no rate to size for.
    Rate,
    /// The fleet misses a target in the queueing model or the simulation after its repairs.
    Simulation,
    /// The integer program failed.
    Solver,
}

/// One change to the spec that would make a fleet feasible (alternatives: any one suffices).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "key")]
pub enum FleetRelaxation {
    /// Raise the class's p99 target to this.
    #[serde(rename = "workload.resolutions.p99_ms")]
    ClassP99Ms {
        /// The class.
        class: Resolution,
        /// The new target, ms.
        value: f64,
    },
    /// Raise the class's p50 target to this.
    #[serde(rename = "workload.resolutions.p50_ms")]
    ClassP50Ms {
        /// The class.
        class: Resolution,
        /// The new target, ms.
        value: f64,
    },
    /// Allow a busier replica (`goal.max_utilization`).
    #[serde(rename = "goal.max_utilization")]
    MaxUtilization,
    /// Make this many GPUs of a type available.
    #[serde(rename = "fleet.available")]
    Available {
        /// The GPU type.
        gpu: String,
        /// The count an unlimited fleet uses.
        value: u32,
    },
    /// More GPUs in `fleet:` (no unlimited fleet was found to say how many).
    #[serde(rename = "fleet")]
    MoreGpus,
    /// A GPU with more memory, or allow offload, FP8 storage, tiling or more GPUs per replica.
    #[serde(rename = "fleet.gpu")]
    MoreMemory,
    /// Give each class a rate (`images_per_s`), or `goal.images_per_s` with shares.
    #[serde(rename = "workload.resolutions.images_per_s")]
    Rates,
    /// Looser p99 targets or a lower `goal.max_utilization`.
    #[serde(rename = "goal.p99_latency_ms")]
    LooserTargets,
    /// None: a failure of the tool (report it with the spec).
    #[serde(rename = "none")]
    None,
}

/// Why no fleet exists: the constraint, the nearest figure and its limit, and the relaxations;
/// typed like `plan`'s `Infeasible` (the sentences `reason` and `relaxation` are written at the
/// edge, `src/render.rs`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FleetInfeasible {
    /// The class that cannot be served, when one is to blame.
    pub class: Option<Resolution>,
    /// What rules the fleet out.
    pub constraint: FleetConstraint,
    /// The nearest candidate's figure (the fastest unloaded p50/p99, the smallest peak).
    pub quantity: Option<Quantity>,
    /// The limit it misses (the target, the capacity).
    pub limit: Option<Quantity>,
    /// The GPU type, when this is about one type alone.
    pub gpu: Option<String>,
    /// Re-solves with tightened rates before the fleet was given up (`simulation`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repairs: Option<u32>,
    /// The integer program's own message (`solver`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Changes to the spec, any one of which would make a fleet feasible.
    pub relax: Vec<FleetRelaxation>,
}

impl FleetInfeasible {
    /// A fleet ruled out by `constraint` with nothing more to say yet.
    pub fn new(constraint: FleetConstraint) -> FleetInfeasible {
        FleetInfeasible {
            class: None,
            constraint,
            quantity: None,
            limit: None,
            gpu: None,
            repairs: None,
            error: None,
            relax: Vec::new(),
        }
    }
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
    /// With `allow.disaggregate`: the best co-located fleet, which the pools above never cost
    /// more than (absent without the key).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub colocated_alternative: Option<Colocated>,
}

/// The best fleet of co-located replicas (`role: all`), beside a fleet that may split stages.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Colocated {
    /// Its cost, when a co-located fleet meets every target.
    pub total_usd_per_hour: Option<f64>,
    /// Its GPUs.
    pub gpus: Option<u32>,
    /// Whether the chosen fleet splits the stages (else it is this one).
    pub disaggregated: bool,
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
