//! What `fleet` returns: plain data (numbers, ids, typed reasons); the binary renders it.

use serde::Serialize;

use crate::deployment::Resolution;
pub use crate::pool::{ClassReport, Colocated, Pool, PoolClass, Target};
pub use crate::queueing::Figures;
use crate::search::{Candidate, Infeasible, Quantity};
use crate::spec::{Goal, Share};

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
