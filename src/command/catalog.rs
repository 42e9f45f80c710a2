//! `models` and `gpus`: the catalog's rows.

use anyhow::Result;

use super::{Context, Exit, Outcome};
use crate::render;

/// `klein-plan models`.
pub fn models(cx: &Context) -> Result<Outcome> {
    let rows: Vec<render::ModelRow> = cx
        .catalog
        .models
        .iter()
        .map(render::ModelRow::from)
        .collect();
    let doc = render::Listing {
        schema_version: planner::estimate::SCHEMA_VERSION,
        models: Some(&rows),
        gpus: None,
    };
    let out = cx.document(&doc, || render::models(&rows))?;
    Ok(Outcome::new(out, Exit::Success))
}

/// `klein-plan gpus`.
pub fn gpus(cx: &Context) -> Result<Outcome> {
    let c = cx.catalog;
    let rows: Vec<render::GpuRow> = c.gpus.iter().map(render::GpuRow::from).collect();
    let doc = render::Listing {
        schema_version: planner::estimate::SCHEMA_VERSION,
        models: None,
        gpus: Some(&rows),
    };
    let out = cx.document(&doc, || render::gpus(&c.gpus))?;
    Ok(Outcome::new(out, Exit::Success))
}
