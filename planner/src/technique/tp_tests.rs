//! Tests of tensor parallelism's physics and legality (`technique::tp`).
