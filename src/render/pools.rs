//! Text of stage pools (`allow.disaggregate`): a pool's role and what one request moves in and
//! out of it over the network, and the co-located fleet's cost beside a fleet that may split
//! stages. Called from `render::fleet`; every figure worded with `render`'s units.

use std::fmt::Write;

use planner::fleet::pools::roles::Role;
use planner::fleet::report::Pool;
use planner::fleet::{Colocated, FleetPlan};

use super::ms;

/// Bytes per request, in MB (10^6) with two decimals (embeddings and latents are a few MB).
fn mb(b: f64) -> String {
    format!("{:.2} MB", b / 1e6)
}

/// What one request moves into (`receives`) or out of (`sends`) a pool: bytes and time, or
/// nothing.
fn side(what: &str, bytes: f64, t: f64) -> String {
    if bytes > 0.0 {
        format!("{what} {} in {} ms", mb(bytes), ms(t))
    } else {
        format!("{what} nothing over the network")
    }
}

/// A stage pool's transfers per request in words (`receives ... · sends ...`); empty for `all`.
pub fn pool_transfers(p: &Pool) -> String {
    if p.role == Role::All {
        return String::new();
    }
    let t = p.transfer.unwrap_or(planner::fleet::pools::Transfer {
        in_bytes: 0.0,
        in_ms: 0.0,
        out_bytes: 0.0,
        out_ms: 0.0,
    });
    format!(
        "{} · {}",
        side("receives", t.in_bytes, t.in_ms),
        side("sends", t.out_bytes, t.out_ms)
    )
}

/// The line under a stage pool: its role and its transfers per request (nothing for `all`).
pub fn pool_lines(out: &mut String, p: &Pool) {
    if p.role == Role::All {
        return;
    }
    let _ = writeln!(
        out,
        "      role {} · per request: {}",
        p.role.name(),
        pool_transfers(p)
    );
}

/// The co-located answer's cost and GPUs, or that none meets every target.
pub fn colocated_cost(c: &Colocated) -> String {
    match (c.total_usd_per_hour, c.gpus) {
        (Some(t), Some(g)) => format!("${t:.2}/h · {g} GPUs"),
        _ => "none meets every target".into(),
    }
}

/// The sentence on a fleet's co-located alternative (`allow.disaggregate`).
pub fn colocated_sentence(c: &Colocated) -> String {
    let what = if c.disaggregated {
        "stage pools chosen; the best co-located fleet"
    } else {
        "co-located replicas chosen (no split is cheaper); the best co-located fleet"
    };
    format!("{what}: {}", colocated_cost(c))
}

/// A stage pool's role in parentheses after its GPUs (nothing for a co-located pool).
pub fn role_suffix(p: &Pool) -> String {
    if p.role == Role::All {
        String::new()
    } else {
        format!(" ({})", p.role.name())
    }
}

/// The co-located fleet's cost, when stage pools were allowed.
pub fn colocated_line(out: &mut String, f: &FleetPlan) {
    if let Some(c) = &f.colocated_alternative {
        let _ = writeln!(out, "  {}", colocated_sentence(c));
    }
}

/// `plan`'s stage pools (`allow.disaggregate` with a rate): the pools that replace the chosen
/// co-located answer, with their classes, or the line saying that none is cheaper.
pub fn plan_lines(out: &mut String, p: &planner::search::Plan) {
    let Some(c) = &p.colocated_alternative else {
        return;
    };
    let colocated = colocated_cost(c);
    let _ = writeln!(out);
    let Some(sp) = &p.stage_pools else {
        let _ = writeln!(
            out,
            "STAGE POOLS none cheaper than the co-located answer ({colocated}): every replica runs all three stages"
        );
        return;
    };
    let _ = writeln!(
        out,
        "STAGE POOLS ${:.2}/h · {} GPUs · meet every class's targets (predicted and simulated){} · replace the co-located answer ({colocated})",
        sp.total_usd_per_hour,
        sp.gpus,
        if sp.solver == "optimal" {
            ""
        } else {
            " · a layout's program stopped at its time limit"
        }
    );
    for pool in &sp.pools {
        super::fleet::pool_block(out, pool);
    }
    super::fleet::class_table(out, &sp.classes, p.goal.confidence);
}
