//! The report's stage pools (`allow.disaggregate`): under the fleet's pools, each pool's role and
//! what one request moves in and out of it, and the co-located fleet's cost; in the plan, the
//! stage pools that replace its chosen deployment (pools, roles, transfers, classes) or the
//! sentence that none is cheaper. Every figure worded by `render`, every text escaped by `table`
//! and `para`.

use planner::fleet::FleetPlan;
use planner::fleet::pools::roles::Role;
use planner::fleet::report::Pool;
use planner::search::Plan;

use super::{Cell, n, para, t, table};
use crate::render;

/// Each stage pool's role and transfers per request (table class `id`).
fn roles_table(out: &mut String, pools: &[Pool], id: &str) {
    let rows: Vec<Vec<Cell>> = pools
        .iter()
        .map(|p| {
            vec![
                t(p.role.name()),
                n(format!("{} x {}", p.count, p.gpu)),
                t(p.classes
                    .iter()
                    .map(|c| c.size.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")),
                t(render::pool_transfers(p)),
            ]
        })
        .collect();
    table(
        out,
        id,
        &["role", "GPUs", "serves", "per request over the network"],
        &rows,
    );
}

/// Under the fleet's pools: their roles and transfers when they split the stages, and the
/// co-located fleet's cost whenever stage pools were allowed.
pub fn fleet_pools(out: &mut String, f: &FleetPlan) {
    if f.pools.iter().any(|p| p.role != Role::All) {
        out.push_str("<h3>Stage pools: roles and transfers</h3>\n");
        roles_table(out, &f.pools, "pool-roles");
    }
    if let Some(c) = &f.colocated_alternative {
        para(
            out,
            &format!("Stage pools allowed: {}.", render::colocated_sentence(c)),
        );
    }
}

/// The plan's stage pools section, when they were considered.
pub fn plan_pools(out: &mut String, p: &Plan) {
    let Some(c) = &p.colocated_alternative else {
        return;
    };
    out.push_str("<section id=\"stage-pools\">\n<h2>Stage pools</h2>\n");
    match &p.stage_pools {
        None => para(
            out,
            &format!(
                "No split of the text encoder, denoiser and VAE decoder into pools of their own is cheaper than the chosen deployment ({}): every replica runs all three stages.",
                render::colocated_cost(c)
            ),
        ),
        Some(sp) => {
            para(
                out,
                &format!(
                    "Stage pools replace the chosen deployment: {} GPUs at ${:.2}/h against {} co-located; each request goes through one pool of each role, its embeddings and latents sent over the network between them.",
                    sp.gpus,
                    sp.total_usd_per_hour,
                    render::colocated_cost(c)
                ),
            );
            super::fleet::pools_table(out, &sp.pools, "plan-pools");
            roles_table(out, &sp.pools, "plan-pool-roles");
            super::fleet::classes_table(out, &sp.classes, "plan-pool-classes");
        }
    }
    out.push_str("</section>\n");
}
