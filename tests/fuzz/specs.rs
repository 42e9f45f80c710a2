//! Generators of the fuzz target's specs and runtime profiles: each key a valid value most of the
//! time and now and then a mistake (an unknown key or value, a wrong type, a bound crossed).

use proptest::prelude::*;
use proptest::sample::select;

/// Mostly a valid value, now and then a mistake: with a mistake in every other field, hardly
/// any generated spec would parse and the planner behind the parser would go untested.
pub fn mixed(
    valid: &'static [&'static str],
    invalid: &'static [&'static str],
) -> BoxedStrategy<String> {
    prop_oneof![
        40 => select(valid).prop_map(str::to_string),
        1 => select(invalid).prop_map(str::to_string),
    ]
    .boxed()
}

/// `key: value` (indented) or nothing.
pub fn maybe_line(
    key: &'static str,
    value: BoxedStrategy<String>,
    indent: usize,
) -> BoxedStrategy<String> {
    prop::option::weighted(0.6, value)
        .prop_map(move |v| {
            v.map(|v| format!("{:indent$}{key}: {v}\n", ""))
                .unwrap_or_default()
        })
        .boxed()
}

/// `[a, b]`: one to `max` picks, or now and then an empty list (a mistake to report).
pub fn flow_list(
    valid: &'static [&'static str],
    invalid: &'static [&'static str],
    max: usize,
) -> BoxedStrategy<String> {
    // Distinct valid choices (a duplicate is a mistake the parser reports), now and then a
    // mistaken one.
    let distinct = prop::sample::subsequence(valid, 1..=max.min(valid.len()))
        .prop_map(|v| v.into_iter().map(str::to_string).collect::<Vec<_>>());
    prop_oneof![
        20 => distinct,
        1 => prop::collection::vec(mixed(valid, invalid), 1..=max),
        1 => Just(Vec::new()),
    ]
    .prop_map(|v| format!("[{}]", v.join(", ")))
    .boxed()
}

/// A mapping's body: `{}` when no key was drawn, else its lines on the next line.
pub fn block(lines: &[String]) -> String {
    let body = lines.concat();
    if body.is_empty() {
        " {}\n".to_string()
    } else {
        format!("\n{body}")
    }
}

pub const MODELS: (&[&str], &[&str]) = (
    &[
        "flux2-klein-4b",
        "flux2-klein-9b",
        "flux2-klein-9b-kv",
        "flux2-klein-base-4b",
        "flux2-klein-base-9b",
        "flux2-dev",
        "flux1-dev",
        "flux1-schnell",
    ],
    &[
        "flux2-klein-12b",
        "FLUX2-KLEIN-4B",
        "''",
        "[flux2-klein-4b]",
        "4",
    ],
);
pub const GPUS: (&[&str], &[&str]) = (
    &[
        "h100-sxm",
        "h100-pcie",
        "h200",
        "b200",
        "a100-80gb",
        "l40s",
        "l20",
        "rtx-4090",
        "rtx-5090",
        "rtx-3090",
    ],
    &["h300", "7", "H200", "{id: h200}"],
);
pub const RESOLUTIONS: (&[&str], &[&str]) = (
    &[
        "1024x1024",
        "2048x2048",
        "768x1360",
        "512x512",
        "1536x1024",
        "256x256",
        "64x64",
        "1024X1024",
        "' 512x512 '",
    ],
    &[
        "1000x1000",
        "0x0",
        "-512x512",
        "16x16",
        "8192x8208",
        "1024",
        "1024x",
        "abc",
        "12x1024",
    ],
);
pub const WEIGHTS: (&[&str], &[&str]) = (
    &["bf16", "fp8-storage", "fp8", "int4", "nvfp4"],
    &["fp16", "int8"],
);
pub const ATTENTION: (&[&str], &[&str]) = (&["sdpa", "flash", "cudnn", "math"], &["xformers"]);
pub const TEXT_ENCODER: (&[&str], &[&str]) = (&["resident", "offload", "drop"], &["cpu"]);
pub const OFFLOAD: (&[&str], &[&str]) = (
    &["none", "model", "group-block", "group-leaf"],
    &["sequential", "yes"],
);
pub const CACHES: (&[&str], &[&str]) = (
    &[
        "none",
        "teacache",
        "dbcache",
        "{kind: teacache, threshold: 0.2}",
        "{kind: dbcache, threshold: 0.12, warmup_steps: 1, compute_blocks: 1}",
        "{kind: dbcache, warmup_steps: 3, compute_blocks: 4}",
    ],
    &[
        "fbcache",
        "{kind: dbcache, threshold: 1.5}",
        "{kind: dbcache, warmup_steps: -1}",
        "{kind: dbcache, compute_blocks: 0}",
        "{kind: teacache, threshold: 0.1, extra: 1}",
        "{threshold: 0.1}",
    ],
);
pub const BATCHES: (&[&str], &[&str]) = (
    &["1", "2", "4", "8"],
    &["0", "-1", "65", "two", "1.5", "true"],
);
pub const STEPS: (&[&str], &[&str]) = (&["1", "4", "8", "28", "50"], &["0", "1001", "-4", "many"]);
pub const BOOLS: (&[&str], &[&str]) = (&["true", "false"], &["yes", "1", "'true'"]);
pub const LATENCIES: (&[&str], &[&str]) = (
    &["50", "300", "1500", "4000", "20000", "1e9"],
    &["-500", "0", ".nan", "fast", "1e308", ".inf", "1e-300"],
);
pub const RATES: (&[&str], &[&str]) = (
    &["0.5", "1", "4", "20", "1e5"],
    &[
        "0",
        "-1",
        ".inf",
        "1e6",
        "1e12",
        "1e308",
        ".nan",
        "18446744073709551615",
    ],
);
pub const SHARES: (&[&str], &[&str]) = (
    &["0.5", "0.25", "1.0", "0.8", "0.2"],
    &["0", "-0.5", "1.2", "half"],
);
pub const OBJECTIVES: (&[&str], &[&str]) = (
    &["min_cost", "min_latency", "max_throughput"],
    &["cheapest", "MinCost"],
);
pub const AVAILABLE: (&[&str], &[&str]) = (
    &["1", "2", "4", "8"],
    &[
        "0",
        "-3",
        "100001",
        "all",
        "4294967297",
        "18446744073709551615",
    ],
);
pub const PRICES: (&[&str], &[&str]) = (
    &["0.69", "2.99", "3.8", "0"],
    &["-1", "cheap", "1e308", ".nan", ".inf", "1e-320"],
);
pub const RUNTIMES: (&[&str], &[&str]) = (&["diffusers", "klein"], &["tensorrt"]);

pub fn parallel() -> BoxedStrategy<String> {
    (
        maybe_line(
            "gpus",
            mixed(&["1", "2", "4", "8"], &["0", "9", "65", "-1", "two"]),
            4,
        ),
        maybe_line("ulysses", mixed(&["1", "2", "4", "8"], &["3", "5", "0"]), 4),
        maybe_line("ring", mixed(&["1", "2", "4"], &["0", "3"]), 4),
        maybe_line("cfg", mixed(&["1", "2"], &["3", "0"]), 4),
        maybe_line("shard", mixed(&["none", "hsdp"], &["fsdp"]), 4),
        maybe_line("vae_patch", mixed(BOOLS.0, BOOLS.1), 4),
        maybe_line("tp", mixed(&["1", "2", "4"], &["0", "65", "two"]), 4),
    )
        // With degrees, `gpus` is their product (the parser refuses idle GPUs): leave it out.
        .prop_map(|(a, b, c, d, e, f, g)| {
            let a = if b.is_empty() && c.is_empty() && d.is_empty() && g.is_empty() {
                a
            } else {
                String::new()
            };
            block(&[a, b, c, d, e, f, g]).trim_end().to_string()
        })
        .boxed()
}

pub fn deployment() -> BoxedStrategy<String> {
    let knobs = (
        maybe_line("resolution", mixed(RESOLUTIONS.0, RESOLUTIONS.1), 2),
        maybe_line("batch", mixed(BATCHES.0, BATCHES.1), 2),
        maybe_line("steps", mixed(STEPS.0, STEPS.1), 2),
        maybe_line("weights", mixed(WEIGHTS.0, WEIGHTS.1), 2),
        maybe_line("attention", mixed(ATTENTION.0, ATTENTION.1), 2),
        maybe_line("text_encoder", mixed(TEXT_ENCODER.0, TEXT_ENCODER.1), 2),
    );
    let more = (
        maybe_line("offload", mixed(OFFLOAD.0, OFFLOAD.1), 2),
        maybe_line("vae_tiling", mixed(BOOLS.0, BOOLS.1), 2),
        maybe_line("cache", mixed(CACHES.0, CACHES.1), 2),
        prop::option::weighted(0.4, parallel())
            .prop_map(|p| p.map(|p| format!("  parallel:{p}\n")).unwrap_or_default()),
        maybe_line(
            "reference_images",
            mixed(&["0", "1", "2"], &["11", "-1"]),
            2,
        ),
        // A misspelt key now and then (`weights` is meant).
        prop::option::weighted(0.05, Just("  precision: fp8\n".to_string()))
            .prop_map(Option::unwrap_or_default),
    );
    (knobs, more)
        .prop_map(|((a, b, c, d, e, f), (g, h, i, j, k, l))| {
            block(&[a, b, c, d, e, f, g, h, i, j, k, l])
        })
        .boxed()
}

pub fn workload() -> BoxedStrategy<String> {
    // Without `share:` each size gets 1/n, so most mixes sum to 1; explicit shares often do not.
    let entry = (
        mixed(RESOLUTIONS.0, RESOLUTIONS.1),
        prop::option::weighted(0.1, mixed(SHARES.0, SHARES.1)),
    )
        .prop_map(|(size, share)| match share {
            Some(share) => format!("    - {{size: {size}, share: {share}}}\n"),
            None => format!("    - {{size: {size}}}\n"),
        });
    (
        prop::option::weighted(0.8, prop::collection::vec(entry, 0..=3)),
        maybe_line("steps", mixed(STEPS.0, STEPS.1), 2),
        maybe_line("reference_images", mixed(&["0", "1", "3"], &["-1"]), 2),
    )
        .prop_map(|(res, steps, refs)| {
            let res = match res {
                None => String::new(),
                Some(v) if v.is_empty() => "  resolutions: []\n".to_string(),
                Some(v) => format!("  resolutions:\n{}", v.concat()),
            };
            block(&[res, steps, refs])
        })
        .boxed()
}

pub fn goal() -> BoxedStrategy<String> {
    (
        maybe_line("p50_latency_ms", mixed(LATENCIES.0, LATENCIES.1), 2),
        maybe_line("images_per_s", mixed(RATES.0, RATES.1), 2),
        maybe_line("objective", mixed(OBJECTIVES.0, OBJECTIVES.1), 2),
    )
        .prop_map(|(a, b, c)| block(&[a, b, c]))
        .boxed()
}

/// At most two GPU types, so the search stays small.
pub fn fleet() -> BoxedStrategy<String> {
    let entry = (
        mixed(GPUS.0, GPUS.1),
        prop::option::of(mixed(AVAILABLE.0, AVAILABLE.1)),
        prop::option::of(mixed(PRICES.0, PRICES.1)),
    )
        .prop_map(|(gpu, available, price)| {
            let mut s = format!("  - {{gpu: {gpu}");
            if let Some(a) = available {
                s += &format!(", available: {a}");
            }
            if let Some(p) = price {
                s += &format!(", price_per_hour: {p}");
            }
            s + "}\n"
        });
    prop_oneof![
        20 => prop::collection::vec(entry, 1..=2).prop_map(|v| format!("\n{}", v.concat())),
        1 => Just(" []\n".to_string()),
    ]
    .boxed()
}

/// Short allow lists keep the search space to a few thousand candidates at most.
pub fn allow() -> BoxedStrategy<String> {
    let lists = (
        maybe_line("weights", flow_list(WEIGHTS.0, WEIGHTS.1, 2), 2),
        maybe_line("attention", flow_list(ATTENTION.0, ATTENTION.1, 2), 2),
        maybe_line(
            "text_encoder",
            flow_list(TEXT_ENCODER.0, TEXT_ENCODER.1, 2),
            2,
        ),
        maybe_line("offload", flow_list(OFFLOAD.0, OFFLOAD.1, 2), 2),
        maybe_line("cache", flow_list(CACHES.0, CACHES.1, 2), 2),
        maybe_line("batch", flow_list(BATCHES.0, BATCHES.1, 2), 2),
    );
    let flags = (
        maybe_line("vae_tiling", mixed(BOOLS.0, BOOLS.1), 2),
        mixed(&["1", "2", "4"], &["0", "9"]),
        maybe_line("sequence_parallel", mixed(BOOLS.0, BOOLS.1), 2),
        maybe_line("cfg_parallel", mixed(BOOLS.0, BOOLS.1), 2),
        maybe_line("hsdp", mixed(BOOLS.0, BOOLS.1), 2),
        maybe_line("vae_patch", mixed(BOOLS.0, BOOLS.1), 2),
        maybe_line("tp", flow_list(&["1", "2", "4"], &["3", "0"], 2), 2),
    );
    (lists, flags)
        .prop_map(|((a, b, c, d, e, f), (g, max_gpus, i, j, k, l, m))| {
            // An unlisted knob means every choice: pin the big ones when they are not listed.
            let or = |line: String, default: &str| {
                if line.is_empty() {
                    default.to_string()
                } else {
                    line
                }
            };
            let a = or(a, "  weights: [bf16, fp8]\n");
            let b = or(b, "  attention: [sdpa]\n");
            let d = or(d, "  offload: [none, model]\n");
            let max_gpus = format!("  max_gpus_per_replica: {max_gpus}\n");
            block(&[a, b, c, d, e, f, g, max_gpus, i, j, k, l, m])
        })
        .boxed()
}

pub fn spec_text() -> impl Strategy<Value = String> {
    let head = (
        prop::option::weighted(0.97, mixed(MODELS.0, MODELS.1)),
        prop::option::weighted(0.5, mixed(GPUS.0, GPUS.1)),
        prop::option::weighted(0.5, mixed(RUNTIMES.0, RUNTIMES.1)),
        prop::option::weighted(0.6, deployment()),
    );
    let tail = (
        prop::option::weighted(0.6, workload()),
        prop::option::weighted(0.6, goal()),
        prop::option::weighted(0.8, fleet()),
        prop::option::weighted(0.95, allow()),
        prop::option::weighted(
            0.03,
            select(
                &[
                    "deploymnt: {batch: 1}",
                    "model",
                    "[1, 2]",
                    "goal: {p50: 1}",
                    "\tmodel: x",
                ][..],
            ),
        ),
    );
    (head, tail).prop_map(
        |((model, gpu, runtime, dep), (work, goal, fleet, allow, junk))| {
            // A key pinned in `deployment:` and given in `workload:` must agree: keep one.
            let dep = dep.map(|d| match &work {
                None => d,
                Some(w) => {
                    d.lines()
                        .filter(|l| {
                            let key = l.trim_start().split(':').next().unwrap_or("");
                            let twin = match key {
                                "resolution" => "resolutions:",
                                "steps" => "steps:",
                                "reference_images" => "reference_images:",
                                _ => return true,
                            };
                            l.starts_with("  ") && !l.starts_with("   ") && !w.contains(twin)
                        })
                        .map(|l| format!("{l}\n"))
                        .collect::<String>()
                        .trim_end_matches('\n')
                        .to_string()
                        + "\n"
                }
            });
            // Without `gpu:` and `fleet:` the search covers every GPU type: too slow for a debug
            // build, so such specs get one GPU.
            let gpu = if gpu.is_none() && fleet.is_none() {
                Some("h200".to_string())
            } else {
                gpu
            };
            let mut s = String::new();
            for (key, value) in [
                ("model", model),
                ("gpu", gpu),
                ("runtime", runtime),
                ("deployment", dep),
                ("workload", work),
                ("goal", goal),
                ("fleet", fleet),
                ("allow", allow),
            ] {
                match value {
                    None => {}
                    Some(v) if v.starts_with(['\n', ' ']) => s += &format!("{key}:{v}"),
                    Some(v) => s += &format!("{key}: {v}\n"),
                }
            }
            if let Some(junk) = junk {
                s += junk;
                s.push('\n');
            }
            s
        },
    )
}

/// The `diffusers` profile as a file, with now and then one parameter set to a hostile value:
/// zero, negative, huge, non-finite, or an unknown name.
pub fn profile_text() -> BoxedStrategy<String> {
    const KEYS: &[&str] = &[
        "conv_efficiency",
        "elementwise_bw_efficiency",
        "link_efficiency",
        "pinned_copy_efficiency",
        "kernel_latency_us",
        "cpu_dispatch_us",
        "attention_dispatch_us",
        "math_bytes_per_score",
        "allocator_slack",
        "context_bytes",
        "gemm_workspace_bytes",
        "conv_im2col_chunk_pixels",
        "vae_attention",
        "sdpa_backend",
        "text_encoder_attention",
    ];
    const VALUES: &[&str] = &[
        "0",
        "-1",
        "1.5",
        "1e308",
        ".nan",
        ".inf",
        "18446744073709551615",
        "1e-300",
        "0.5",
        "xformers",
        "math",
        "flash",
    ];
    (prop::option::weighted(0.7, (select(KEYS), select(VALUES))))
        .prop_map(|change| {
            let catalog = planner::catalog::Catalog::get();
            let base = catalog.runtime("diffusers").expect("diffusers profile");
            let mut text = serde_saphyr::to_string(base).expect("profile serializes");
            if let Some((key, value)) = change {
                text = text
                    .lines()
                    .map(|l| {
                        if l.starts_with(&format!("{key}:")) {
                            format!("{key}: {value}")
                        } else {
                            l.to_string()
                        }
                    })
                    .collect::<Vec<_>>()
                    .join("\n");
            }
            text
        })
        .boxed()
}
