//! Stage pools (`allow.disaggregate`) as SGLang-Diffusion launches: a head node that routes
//! requests, then one `sglang serve` command per pool with its `--disagg-role` and the role's
//! parallel flags, to run on each of the pool's replicas.
//!
//! Every flag is one SGLang defines, read at sgl-project/sglang@5a374942659e7607332d54d1723ccd5d54222730:
//! `--disagg-role` (encoder / denoiser / decoder / server), `--disagg-server-addr`,
//! `--encoder-urls`, `--denoiser-urls`, `--decoder-urls`, `--denoiser-ulysses`, `--denoiser-ring`
//! in python/sglang/multimodal_gen/runtime/disaggregation/disagg_args.py; `--model-path`,
//! `--num-gpus`, `--enable-cfg-parallel` in python/sglang/multimodal_gen/runtime/server_args.py
//! (`SGLANG_POOL_FLAGS`; a unit test holds every command to that list). SGLang's roles are the
//! three single stages, so a merged role (`encoder+denoiser`, `denoiser+decoder`) is refused, as is
//! every knob the role flags cannot say (another precision, offload, a cache, tiling, batching,
//! HSDP, a patch-parallel decode, a sharded text encoder): an export runs what was planned, or
//! says why not.

// Called by `export --to sglang` (src/command/export.rs) for a fleet of stage pools.

use planner::catalog::Model;
use planner::deployment::{Cache, Offload, Precision, Shard, TeShard};
use planner::fleet::pools::roles::Role;
use planner::fleet::report::Pool;

use super::sh_word;

/// Every flag the commands may carry, with the SGLang file that defines it (read by the tests).
#[cfg_attr(not(test), allow(dead_code))]
pub const SGLANG_POOL_FLAGS: &[(&str, &str)] = &[
    (
        "--model-path",
        "python/sglang/multimodal_gen/runtime/server_args.py",
    ),
    (
        "--num-gpus",
        "python/sglang/multimodal_gen/runtime/server_args.py",
    ),
    (
        "--enable-cfg-parallel",
        "python/sglang/multimodal_gen/runtime/server_args.py",
    ),
    (
        "--disagg-role",
        "python/sglang/multimodal_gen/runtime/disaggregation/disagg_args.py",
    ),
    (
        "--disagg-server-addr",
        "python/sglang/multimodal_gen/runtime/disaggregation/disagg_args.py",
    ),
    (
        "--encoder-urls",
        "python/sglang/multimodal_gen/runtime/disaggregation/disagg_args.py",
    ),
    (
        "--denoiser-urls",
        "python/sglang/multimodal_gen/runtime/disaggregation/disagg_args.py",
    ),
    (
        "--decoder-urls",
        "python/sglang/multimodal_gen/runtime/disaggregation/disagg_args.py",
    ),
    (
        "--denoiser-ulysses",
        "python/sglang/multimodal_gen/runtime/disaggregation/disagg_args.py",
    ),
    (
        "--denoiser-ring",
        "python/sglang/multimodal_gen/runtime/disaggregation/disagg_args.py",
    ),
];

/// The SGLang role name of a pool, or why it has none.
fn role_flag(r: Role) -> Result<&'static str, String> {
    match r {
        Role::Encoder => Ok("encoder"),
        Role::Denoiser => Ok("denoiser"),
        Role::Decoder => Ok("decoder"),
        Role::All => Err(
            "role all: a co-located pool is a plain (monolithic) server, not a stage pool".into(),
        ),
        r => Err(format!(
            "role {}: SGLang's --disagg-role runs one stage per instance (encoder, denoiser, decoder)",
            r.name()
        )),
    }
}

/// What a pool's deployment needs that the role flags cannot say.
fn unsaid(i: usize, p: &Pool) -> Vec<String> {
    let d = &p.deployment;
    let at = |what: String| format!("pool {} ({}): {what}", i + 1, p.role.name());
    let mut out = Vec::new();
    if d.weights != Precision::Bf16 {
        out.push(at(format!(
            "weights {}: no precision flag for a role instance",
            d.weights.name()
        )));
    }
    if d.offload != Offload::None {
        out.push(at(format!(
            "offload {}: a stage pool holds its stages resident",
            d.offload.name()
        )));
    }
    if d.cache != Cache::None {
        out.push(at(format!(
            "cache {}: no cache flag for a role instance",
            d.cache.name()
        )));
    }
    if d.vae_tiling {
        out.push(at("vae tiling: no tiling flag for a role instance".into()));
    }
    if d.batch > 1 {
        out.push(at(format!(
            "batch {}: no batch-size flag for a role instance",
            d.batch
        )));
    }
    let pl = d.parallel;
    if pl.shard == Shard::Hsdp || pl.vae_patch || pl.text_encoder != TeShard::Replicated {
        out.push(at(
            "HSDP, a patch-parallel decode or a sharded or tensor-parallel text encoder: no role flag".into(),
        ));
    }
    if pl.tp > 1 {
        out.push(at(
            "tensor parallelism: no role flag checked for a TP denoiser".into(),
        ));
    }
    if p.role != Role::Denoiser && (pl.ulysses > 1 || pl.ring > 1 || pl.cfg > 1) {
        out.push(at("sequence or CFG parallelism outside the denoiser".into()));
    }
    out
}

/// One launch command per pool (and the head node's), or every reason the export cannot be
/// faithful. `repo` is the model's checked Hugging Face id.
pub fn pool_commands(m: &Model, repo: &str, pools: &[Pool]) -> Result<String, Vec<String>> {
    let mut problems = Vec::new();
    if !planner::catalog::is_repo_id(repo) {
        problems.push(format!(
            "repo '{}' is not owner/name",
            planner::spec::echo(repo, 64)
        ));
    }
    let mut lines = vec![
        format!(
            "# {}",
            super::comment(&format!(
                "klein-plan export: stage pools of {} for SGLang-Diffusion (--disagg-role)",
                m.id
            ))
        ),
        "# flags as defined at sgl-project/sglang@5a37494 (runtime/disaggregation/disagg_args.py)"
            .into(),
        "# set HEAD to the head node's tcp://HOST:PORT and each *_URLS to its instances' endpoints"
            .into(),
        "# head node (routes requests, no GPU):".into(),
        format!(
            "sglang serve --model-path {} --disagg-role server --encoder-urls \"$ENCODER_URLS\" --denoiser-urls \"$DENOISER_URLS\" --decoder-urls \"$DECODER_URLS\"",
            sh_word(repo)
        ),
    ];
    // SGLang's head node spreads a role's requests over every URL of that role: it cannot send
    // one image size to one pool of the role and another size to another.
    for (i, p) in pools.iter().enumerate() {
        if pools[..i].iter().any(|q| q.role == p.role) {
            problems.push(format!(
                "pool {}: a second {} pool (for {}): SGLang's head node routes a role's requests over all its instances, not by image size",
                i + 1,
                p.role.name(),
                p.classes
                    .iter()
                    .map(|c| c.size.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    for (i, p) in pools.iter().enumerate() {
        let role = match role_flag(p.role) {
            Ok(r) => r,
            Err(e) => {
                problems.push(format!("pool {}: {e}", i + 1));
                continue;
            }
        };
        problems.extend(unsaid(i, p));
        let pl = p.deployment.parallel;
        let mut flags = vec![
            format!("--model-path {}", sh_word(repo)),
            format!("--disagg-role {role}"),
            "--disagg-server-addr \"$HEAD\"".to_string(),
            format!("--num-gpus {}", p.gpus_per_replica),
        ];
        if pl.ulysses > 1 {
            flags.push(format!("--denoiser-ulysses {}", pl.ulysses));
        }
        if pl.ring > 1 {
            flags.push(format!("--denoiser-ring {}", pl.ring));
        }
        if pl.cfg > 1 {
            flags.push("--enable-cfg-parallel".into());
        }
        lines.push(format!(
            "# {}",
            super::comment(&format!(
                "pool {}: {role} on {} x {} ({} replica{} of {} GPU{}), one command per replica",
                i + 1,
                p.count,
                p.gpu,
                p.replicas,
                if p.replicas == 1 { "" } else { "s" },
                p.gpus_per_replica,
                if p.gpus_per_replica == 1 { "" } else { "s" },
            ))
        ));
        lines.push(format!("sglang serve {}", flags.join(" ")));
    }
    if problems.is_empty() {
        Ok(lines.join("\n") + "\n")
    } else {
        Err(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use planner::fleet::fleet;
    use planner::spec::parse;

    fn pools() -> (planner::fleet::FleetPlan, String) {
        let spec = include_str!("../../specs/stage-pools.yaml");
        let s = parse(spec).unwrap();
        let repo = s.model.repo.clone().expect("catalog repo");
        (fleet(&s), repo)
    }

    #[test]
    fn one_command_per_pool_with_its_role_and_only_known_flags() {
        let (f, repo) = pools();
        let m = planner::catalog::Catalog::get()
            .model("flux2-klein-9b")
            .unwrap();
        let code = pool_commands(m, &repo, &f.pools).expect("exports");
        let commands: Vec<&str> = code.lines().filter(|l| l.starts_with("sglang ")).collect();
        assert_eq!(commands.len(), f.pools.len() + 1, "{code}");
        for (p, c) in f.pools.iter().zip(&commands[1..]) {
            assert!(
                c.contains(&format!("--disagg-role {}", p.role.name())),
                "{c}"
            );
        }
        for c in commands {
            for w in c.split_whitespace().filter(|w| w.starts_with("--")) {
                assert!(
                    SGLANG_POOL_FLAGS.iter().any(|(f, _)| *f == w),
                    "{w} is not an SGLang flag"
                );
            }
        }
    }

    #[test]
    fn merged_roles_and_unsayable_knobs_are_refused_with_the_reason() {
        let (f, repo) = pools();
        let m = planner::catalog::Catalog::get()
            .model("flux2-klein-9b")
            .unwrap();
        let mut p = f.pools.clone();
        p[0].role = Role::DenoiserDecoder;
        p[1].deployment.batch = 2;
        let e = pool_commands(m, &repo, &p).unwrap_err();
        assert!(e.iter().any(|x| x.contains("denoiser+decoder")), "{e:?}");
        assert!(e.iter().any(|x| x.contains("batch 2")), "{e:?}");
        // Two pools of one role (one per image size) cannot be routed by SGLang's head node.
        let mut two = f.pools.clone();
        two.push(two[1].clone());
        let e = pool_commands(m, &repo, &two).unwrap_err();
        assert!(e.iter().any(|x| x.contains("a second")), "{e:?}");
        // A repo that is not owner/name never reaches the command line.
        let e = pool_commands(m, "a b; rm -rf /", &f.pools).unwrap_err();
        assert!(e.iter().any(|x| x.contains("owner/name")), "{e:?}");
    }
}
