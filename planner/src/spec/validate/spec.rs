//! The spec as a whole: model, runtime and GPU, the workload, the goal, the fleet, assembled into a
//! `Spec` when nothing is missing (every problem of every part is collected first).

use super::*;
use crate::catalog::Gpu;

/// The workload's part of a spec: the traffic mix, steps, guidance, reference images and the
/// classes' total rate when they give their own.
struct Workload {
    mix: Vec<Share>,
    steps: Option<u32>,
    cfg: Option<bool>,
    reference_images: u32,
    class_rates: Option<f64>,
}

impl<'c> Validator<'_, 'c> {
    /// The whole spec, or `None` when a part it cannot do without is missing.
    pub(super) fn spec(&mut self, raw: RawSpec) -> Option<Spec<'c>> {
        let model = self.model(&raw);
        let runtime = self.runtime(&raw);
        let gpu = self.gpu(&raw);
        let pins = raw
            .deployment
            .as_ref()
            .map(|d| self.pins(&d.value, model))
            .unwrap_or_default();
        let Workload {
            mix,
            steps,
            cfg,
            reference_images,
            class_rates,
        } = self.workload(&raw, model, &pins);
        let mut goal = self.goal(&raw);
        self.class_total(&raw, class_rates, &mut goal);
        let fleet = self.fleet(&raw, gpu);
        let allow = self.allow(raw.allow.as_ref().map(|a| &a.value));
        let network = self.network(raw.network.as_ref().map(|n| &n.value));
        let model = model?;
        let runtime = runtime?;
        let runtimes = self.runtime_list(raw.allow.as_ref().map(|a| &a.value), runtime)?;
        Some(Spec {
            model,
            runtime,
            runtimes,
            gpu,
            has_deployment: raw.deployment.is_some(),
            deployment_at: raw.deployment.as_ref().and_then(loc),
            steps: pins.steps.or(steps).unwrap_or(model.default_steps),
            reference_images,
            cfg: cfg.unwrap_or(model.guidance == Guidance::Cfg),
            pins,
            mix,
            goal,
            fleet,
            allow,
            network,
        })
    }

    /// `model:`, from the catalog.
    fn model(&mut self, raw: &RawSpec) -> Option<&'c Model> {
        let c = self.catalog;
        match &raw.model {
            // Not when the key was there but dropped for its own problem (a type error).
            None if self
                .problems
                .iter()
                .any(|p| p.field == "model" || p.field.is_empty()) =>
            {
                None
            }
            None => {
                self.problem(
                    "model",
                    None,
                    "missing",
                    "add `model: flux2-klein-4b` (see `klein-plan models`)",
                );
                None
            }
            Some(m) => {
                let found = c.model(&m.value);
                if found.is_none() {
                    let ids: Vec<&str> = c.models.iter().map(|m| m.id.as_str()).collect();
                    self.problem(
                        "model",
                        loc(m),
                        format!("unknown model '{}'", v(&m.value)),
                        format!("expected one of {}", ids.join(", ")),
                    );
                }
                found
            }
        }
    }

    /// `runtime:`, a catalog profile or a profile file.
    fn runtime(&mut self, raw: &RawSpec) -> Option<&'c RuntimeProfile> {
        let c = self.catalog;
        match &raw.runtime {
            None => c.runtime("diffusers"),
            Some(r) if is_profile_path(&r.value) => match (self.load)(&r.value) {
                Ok(p) => Some(p),
                Err(errors) => {
                    for e in errors {
                        self.problem(
                            "runtime",
                            loc(r),
                            e,
                            "write the profile with `klein-plan calibrate -o PATH`",
                        );
                    }
                    None
                }
            },
            Some(r) => {
                let found = c.runtime(&r.value);
                if found.is_none() {
                    self.problem(
                        "runtime",
                        loc(r),
                        format!("unknown runtime '{}'", v(&r.value)),
                        "expected one of diffusers, klein, or a profile file such as ./profile.yaml",
                    );
                }
                found
            }
        }
    }

    /// `allow.runtime: [ids]`: the runtimes the search tries, each a catalog id listed once. The
    /// spec's `runtime` is always tried, first (the list may name it, or not); `None` after a
    /// problem.
    fn runtime_list(
        &mut self,
        raw: Option<&RawAllow>,
        runtime: &'c RuntimeProfile,
    ) -> Option<Vec<&'c RuntimeProfile>> {
        let c = self.catalog;
        let mut out = vec![runtime];
        let Some(list) = raw.and_then(|a| a.runtime.as_ref()) else {
            return Some(out);
        };
        let before = self.problems.len();
        self.list_size("allow.runtime", list);
        let mut seen: Vec<&str> = Vec::new();
        for r in &list.value {
            if seen.contains(&r.value.as_str()) {
                self.duplicate("allow.runtime", loc(r), &r.value);
                continue;
            }
            seen.push(&r.value);
            match c.runtime(&r.value) {
                None => {
                    let ids: Vec<&str> = c.runtimes.iter().map(|r| r.id.as_str()).collect();
                    self.problem(
                        "allow.runtime",
                        loc(r),
                        format!("unknown runtime '{}'", v(&r.value)),
                        format!("expected catalog runtimes among {}", ids.join(", ")),
                    );
                }
                Some(p) if std::ptr::eq(p, runtime) || p.id == runtime.id => {}
                Some(p) => out.push(p),
            }
        }
        (self.problems.len() == before).then_some(out)
    }

    /// The catalog's GPU ids, for hints.
    fn gpu_ids(&self) -> String {
        self.catalog
            .gpus
            .iter()
            .map(|g| g.id.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// `gpu:`, from the catalog.
    fn gpu(&mut self, raw: &RawSpec) -> Option<&'c Gpu> {
        let c = self.catalog;
        raw.gpu.as_ref().and_then(|g| {
            let found = c.gpu(&g.value);
            if found.is_none() {
                self.problem(
                    "gpu",
                    loc(g),
                    format!("unknown gpu '{}'", v(&g.value)),
                    format!("expected one of {}", self.gpu_ids()),
                );
            }
            found
        })
    }

    /// `workload:`: the traffic mix (a default class when none is given), steps, guidance and
    /// reference images, each checked against the pinned deployment.
    fn workload(&mut self, raw: &RawSpec, model: Option<&Model>, pins: &Pins) -> Workload {
        // Workload: the traffic mix, steps and reference images.
        let mut mix = Vec::new();
        let mut steps = None;
        let mut cfg = None;
        let mut reference_images = pins.reference_images.unwrap_or(0);
        let mut class_rates = None;
        if let Some(w) = &raw.workload {
            if let Some(list) = &w.value.resolutions {
                let mut all_valid = true;
                for entry in list.value.iter().take(MAX_ENTRIES) {
                    let r = self.resolution("workload.resolutions.size", &entry.value.size);
                    let share = match &entry.value.share {
                        Some(s) => self.number("workload.resolutions.share", s, false, 1.0),
                        None => Some(1.0 / list.value.len() as f64),
                    };
                    if let Some(r) = r
                        && mix.iter().any(|m: &Share| m.resolution == r)
                    {
                        self.duplicate(
                            "workload.resolutions.size",
                            loc(&entry.value.size),
                            &r.to_string(),
                        );
                        all_valid = false;
                        continue;
                    }
                    match (r, share, self.class(entry)) {
                        (Some(resolution), Some(share), Some((images_per_s, p50_ms, p99_ms))) => {
                            mix.push(Share {
                                resolution,
                                share,
                                images_per_s,
                                p50_ms,
                                p99_ms,
                            })
                        }
                        _ => all_valid = false,
                    }
                }
                if list.value.len() > MAX_ENTRIES {
                    self.problem(
                        "workload.resolutions",
                        loc(list),
                        format!(
                            "{} traffic classes (at most {MAX_ENTRIES})",
                            list.value.len()
                        ),
                        "merge sizes that share a deployment",
                    );
                    all_valid = false;
                }
                if !all_valid {
                    // The shares of the remaining entries say nothing about the mix as written.
                    mix.clear();
                }
                class_rates = self.class_rates(list, &mut mix);
                if list.value.is_empty() {
                    self.problem(
                        "workload.resolutions",
                        loc(list),
                        "the list is empty",
                        "name at least one `size: 1024x1024`",
                    );
                }
                let total: f64 = mix.iter().map(|s| s.share).sum();
                if !mix.is_empty() && class_rates.is_none() && (total - 1.0).abs() > 0.01 {
                    self.problem(
                        "workload.resolutions",
                        loc(list),
                        format!("shares sum to {total:.3}, not 1"),
                        "give each size its fraction of requests, summing to 1",
                    );
                }
            }
            if let Some(s) = &w.value.steps {
                steps = self.count("workload.steps", s, 1, 1000);
                if let (Some(a), Some(b)) = (steps, pins.steps)
                    && a != b
                {
                    self.conflict("steps", a, b, loc(s));
                }
            }
            if let Some(c) = &w.value.cfg {
                cfg = Some(c.value);
                if let Some(m) = model
                    && c.value
                    && m.guidance != Guidance::Cfg
                {
                    self.problem(
                        "workload.cfg",
                        loc(c),
                        format!("{} is guidance-distilled: it runs one pass per step", m.id),
                        "remove `cfg: true`, or pick a base model (flux2-klein-base-4b/9b)",
                    );
                }
            }
            if let Some(r) = &w.value.reference_images {
                reference_images = self
                    .count("workload.reference_images", r, 0, 10)
                    .unwrap_or(0);
                if let Some(pin) = pins.reference_images
                    && pin != reference_images
                {
                    self.conflict("reference_images", reference_images, pin, loc(r));
                }
            }
            // A pinned size is what `plan` costs, so it must be the traffic (or absent from it).
            if let (Some(pin), Some(list), Some(d)) =
                (pins.resolution, &w.value.resolutions, &raw.deployment)
                && !mix.is_empty()
                && !(mix.len() == 1 && mix[0].resolution == pin)
            {
                self.problem(
                    "deployment.resolution",
                    d.value.resolution.as_ref().and_then(loc).or(loc(list)),
                    format!(
                        "{pin} is pinned, but workload.resolutions lists {}",
                        mix.iter()
                            .map(|m| m.resolution.to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    "drop deployment.resolution (the plan judges every size of the traffic), or make it the only size",
                );
            }
        }
        if mix.is_empty() {
            mix.push(Share {
                resolution: pins.resolution.unwrap_or(Resolution {
                    width: 1024,
                    height: 1024,
                }),
                share: 1.0,
                images_per_s: None,
                p50_ms: None,
                p99_ms: None,
            });
        }
        Workload {
            mix,
            steps,
            cfg,
            reference_images,
            class_rates,
        }
    }

    /// `goal:`, with its defaults.
    fn goal(&mut self, raw: &RawSpec) -> Goal {
        match &raw.goal {
            None => Goal {
                p50_latency_ms: None,
                images_per_s: None,
                objective: Objective::MinCost,
                p99_latency_ms: None,
                max_utilization: None,
                confidence: DEFAULT_CONFIDENCE,
            },
            Some(g) => {
                let g = &g.value;
                let objective = match &g.objective {
                    None => Some(Objective::MinCost),
                    Some(o) => match o.value.as_str() {
                        "min_cost" => Some(Objective::MinCost),
                        "min_latency" => Some(Objective::MinLatency),
                        "max_throughput" => Some(Objective::MaxThroughput),
                        other => {
                            self.problem(
                                "goal.objective",
                                loc(o),
                                format!("unknown objective '{other}'"),
                                "expected one of min_cost, min_latency, max_throughput",
                            );
                            None
                        }
                    },
                };
                Goal {
                    p50_latency_ms: g
                        .p50_latency_ms
                        .as_ref()
                        .and_then(|v| self.number("goal.p50_latency_ms", v, false, MAX_LATENCY_MS)),
                    images_per_s: g
                        .images_per_s
                        .as_ref()
                        .and_then(|v| self.number("goal.images_per_s", v, false, MAX_IMAGES_PER_S)),
                    objective: objective.unwrap_or(Objective::MinCost),
                    p99_latency_ms: g
                        .p99_latency_ms
                        .as_ref()
                        .and_then(|v| self.number("goal.p99_latency_ms", v, false, MAX_LATENCY_MS)),
                    max_utilization: g.max_utilization.as_ref().and_then(|v| {
                        self.number("goal.max_utilization", v, false, 1.0)
                            .filter(|u| {
                                let ok = *u <= 1.0;
                                if !ok {
                                    self.problem(
                                        "goal.max_utilization",
                                        loc(v),
                                        format!("{u} is above 1"),
                                        "give the busiest a replica may be as a fraction, e.g. 0.8",
                                    );
                                }
                                ok
                            })
                    }),
                    confidence: match &g.confidence {
                        None => DEFAULT_CONFIDENCE,
                        Some(v) => self.confidence(v),
                    },
                }
            }
        }
    }

    /// Per-class rates add up to the goal's total (given or not).
    fn class_total(&mut self, raw: &RawSpec, class_rates: Option<f64>, goal: &mut Goal) {
        if let Some(total) = class_rates {
            match (
                goal.images_per_s,
                raw.goal
                    .as_ref()
                    .and_then(|g| g.value.images_per_s.as_ref()),
            ) {
                (Some(given), Some(at)) if (given - total).abs() > 0.01 * total => self.problem(
                    "goal.images_per_s",
                    loc(at),
                    format!("{given} differs from the classes' total {total}"),
                    "drop goal.images_per_s (the classes' rates add up to it) or make them agree",
                ),
                _ => goal.images_per_s = Some(total),
            }
        }
    }

    /// `fleet:`, else the `gpu:` alone, else every catalog GPU but the host.
    fn fleet(&mut self, raw: &RawSpec, gpu: Option<&'c Gpu>) -> Vec<FleetEntry<'c>> {
        let c = self.catalog;
        let mut fleet = Vec::new();
        match &raw.fleet {
            Some(list) => {
                if list.value.is_empty() {
                    self.problem(
                        "fleet",
                        loc(list),
                        "the fleet is empty",
                        "list at least one `- gpu: h200`",
                    );
                }
                if list.value.len() > MAX_ENTRIES {
                    self.problem(
                        "fleet",
                        loc(list),
                        format!("{} entries (at most {MAX_ENTRIES})", list.value.len()),
                        "list each GPU type once",
                    );
                }
                for e in list.value.iter().take(MAX_ENTRIES) {
                    let e = &e.value;
                    let Some(g) = c.gpu(&e.gpu.value) else {
                        self.problem(
                            "fleet.gpu",
                            loc(&e.gpu),
                            format!("unknown gpu '{}'", v(&e.gpu.value)),
                            format!("expected one of {}", self.gpu_ids()),
                        );
                        continue;
                    };
                    if fleet.iter().any(|f: &FleetEntry| f.gpu.id == g.id) {
                        self.problem(
                            "fleet.gpu",
                            loc(&e.gpu),
                            format!("{} is listed twice", g.id),
                            "merge the entries",
                        );
                        continue;
                    }
                    let available = match &e.available {
                        Some(a) => self.count("fleet.available", a, 1, 100_000).unwrap_or(1),
                        None => FleetEntry::UNLIMITED,
                    };
                    let price = match &e.price_per_hour {
                        // 0 is a GPU already owned.
                        Some(p) => self
                            .number("fleet.price_per_hour", p, true, MAX_PRICE_PER_HOUR)
                            .unwrap_or(g.price_per_hour),
                        None => g.price_per_hour,
                    };
                    fleet.push(FleetEntry {
                        gpu: g,
                        available,
                        price_per_hour: price,
                    });
                }
            }
            None => match gpu {
                Some(g) => fleet.push(FleetEntry {
                    gpu: g,
                    available: FleetEntry::UNLIMITED,
                    price_per_hour: g.price_per_hour,
                }),
                None => {
                    for g in c.gpus.iter().filter(|g| g.arch != "cpu") {
                        fleet.push(FleetEntry {
                            gpu: g,
                            available: FleetEntry::UNLIMITED,
                            price_per_hour: g.price_per_hour,
                        });
                    }
                }
            },
        }
        fleet
    }
}
