//! The model graphs as op traces: the FLUX transformer's forward pass (`dit`), the VAE decoder
//! (`vae`) and the text encoders (`text`) in diffusers' and transformers' order, and the `klein`
//! runtime's own graph (`klein`, `graph: klein`). They emit kernels through `cost` and hand the
//! techniques their points in the pass (`technique::sequence`'s attention); `estimate/stages.rs`
//! calls them per stage.

pub mod dit;
pub mod klein;
pub mod text;
pub mod vae;
