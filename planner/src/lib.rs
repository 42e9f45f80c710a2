//! klein-plan planner (placeholder while the crate is being written).
