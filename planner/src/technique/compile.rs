//! torch.compile (inductor) of the denoiser (`deployment.compile: true`), as the physics it
//! changes on the same trace, not a speed-up factor: elementwise chains between GEMMs and
//! attention run as one generated kernel each (their intermediates no longer round-trip HBM,
//! one launch per chain: `fused_elementwise`), QK-norm, RoPE and activation quantization fuse
//! likewise, the attention call's Python wrapper and the views are traced away, and each launch
//! costs the host the compiled graph's wrapper (`compile.dispatch_us`) instead of an eager op's
//! dispatch. GEMMs and attention keep their kernels. The first call of each new shape pays the
//! compilation once (`compile.first_call_s`, reported, not part of a request's latency).
//! Legality: the runtime's `capabilities.compile`.

pub use crate::catalog::CompileProfile;
use crate::catalog::RuntimeProfile;

/// The profile the compiled denoiser runs under: the same kernels, the compiled graph's op
/// structure and host costs.
pub fn compiled(rt: &RuntimeProfile) -> RuntimeProfile {
    RuntimeProfile {
        fused_norm_rope: true,
        fused_quantization: true,
        fused_elementwise: true,
        cpu_dispatch_us: rt.compile.dispatch_us,
        attention_dispatch_us: 0.0,
        view_dispatch_us: 0.0,
        ..rt.clone()
    }
}

#[cfg(test)]
mod tests {
    use crate::catalog::Catalog;
    use crate::deployment::{Deployment, Resolution};
    use crate::estimate::{Inputs, estimate};

    fn step_ms(runtime: &str, compile: bool) -> (f64, u64) {
        let c = Catalog::get();
        let inp = Inputs {
            model: c.model("flux1-dev").unwrap(),
            gpu: c.gpu("h100-sxm").unwrap(),
            runtime: c.runtime(runtime).unwrap(),
        };
        let mut d = Deployment::baseline(
            Resolution {
                width: 1024,
                height: 1024,
            },
            1,
            28,
        );
        d.compile = compile;
        let e = estimate(inp, &d).unwrap();
        (e.stages[1].step_ms.unwrap(), e.memory.peak_bytes)
    }

    #[test]
    fn compiling_saves_host_and_hbm_time_but_not_memory() {
        let (eager, eager_peak) = step_ms("diffusers", false);
        let (compiled, compiled_peak) = step_ms("diffusers", true);
        // Fewer launches and bytes: faster, never slower than the GEMMs and attention allow.
        assert!(compiled < eager, "{compiled} vs {eager}");
        assert!(
            compiled > 0.5 * eager,
            "{compiled} vs {eager}: not a free lunch"
        );
        // Fused chains hold no more than the eager ones.
        assert!(compiled_peak <= eager_peak);
    }

    #[test]
    fn klein_has_no_compile() {
        let c = Catalog::get();
        let rt = c.runtime("klein").unwrap();
        let mut d = Deployment::baseline(
            Resolution {
                width: 512,
                height: 512,
            },
            1,
            4,
        );
        d.compile = true;
        let lacks = rt.capabilities().lacks(crate::catalog::Family::Flux2, &d);
        assert!(lacks.iter().any(|l| l.technique == "compile"));
    }
}

#[cfg(test)]
mod search_tests {
    use crate::search::enumerate::enumerate;

    fn spec(runtime: &str, allow: &str) -> String {
        format!(
            "model: flux2-klein-4b\nruntime: {runtime}\nworkload:\n  resolutions: [{{size: 1024x1024, share: 1}}]\n  steps: 4\ngoal:\n  p50_latency_ms: 2000\nfleet:\n  - {{gpu: h100-sxm, available: 1, price_per_hour: 2.99}}\nallow:\n  weights: [bf16]\n  cache: [none]\n{allow}"
        )
    }

    #[test]
    fn allow_compile_is_searched_where_the_runtime_has_it() {
        let both = "  compile: [false, true]\n";
        let count = |runtime: &str, allow: &str| {
            let s = crate::spec::parse(&spec(runtime, allow)).unwrap();
            let c = enumerate(&s);
            (c.len(), c.iter().filter(|(_, d)| d.compile).count())
        };
        let (eager, none) = count("diffusers", "");
        assert_eq!(none, 0, "default: eager only");
        let (all, compiled) = count("diffusers", both);
        assert_eq!((all, compiled), (2 * eager, eager));
        // klein has no compiler: the search never tries it.
        assert_eq!(count("klein", both).1, 0);
    }

    #[test]
    fn allow_compile_lists_each_setting_once() {
        let e = crate::spec::parse(&spec("diffusers", "  compile: [true, true]\n")).unwrap_err();
        assert!(e.problems.iter().any(|p| p.field == "allow.compile"));
        let e = crate::spec::parse(&spec("diffusers", "  compile: []\n")).unwrap_err();
        assert!(e.problems.iter().any(|p| p.field == "allow.compile"));
    }
}

#[cfg(test)]
mod range_tests {
    use crate::catalog::Catalog;
    use crate::deployment::{Deployment, Resolution};
    use crate::estimate::{Inputs, estimate};

    #[test]
    fn a_compiled_estimate_carries_the_unmeasured_range() {
        let c = Catalog::get();
        let inp = Inputs {
            model: c.model("flux1-dev").unwrap(),
            gpu: c.gpu("h100-sxm").unwrap(),
            runtime: c.runtime("sglang").unwrap(),
        };
        let mut d = Deployment::baseline(
            Resolution {
                width: 1024,
                height: 1024,
            },
            1,
            28,
        );
        let eager = estimate(inp, &d).unwrap();
        assert!(eager.latency.basis.starts_with("published runtime"));
        d.compile = true;
        let compiled = estimate(inp, &d).unwrap();
        assert!(
            compiled.latency.basis.starts_with("unmeasured")
                && compiled.latency.basis.contains("torch.compile"),
            "{}",
            compiled.latency.basis
        );
        assert_eq!(compiled.latency.compile_first_call_s, Some(60.0));
    }
}
