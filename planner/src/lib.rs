//! klein-plan's pure core: validated specs in, costed deployments and plans out.
//!
//! The crate does no I/O, reads no environment and prints nothing. Catalogs are embedded at build
//! time. See ARCHITECTURE.md at the repository root for the code map and invariants.
//!
//! ```
//! use planner::catalog::Catalog;
//! let klein = Catalog::get().model("flux2-klein-4b").unwrap();
//! assert_eq!(klein.transformer.params().total(), 3_875_544_576);
//! ```
#![deny(missing_docs)]

pub mod catalog;
pub mod confidence;
pub mod cost;
pub mod deployment;
pub mod estimate;
pub mod fit;
pub mod fleet;
pub mod graph;
pub mod memo;
pub mod message;
pub mod pool;
pub mod queueing;
pub mod ranges;
pub mod rules;
pub mod search;
pub mod spec;
pub mod technique;
pub mod violation;
