//! The spec's structured keys: a cache and its parameters, `deployment.parallel`, one traffic class
//! and the classes' rates, the pinned deployment keys, and `allow:`.

use super::*;

impl<'c> Validator<'_, 'c> {
    pub(super) fn cache(
        &mut self,
        field: &str,
        l: Option<Location>,
        raw: &RawCache,
    ) -> Option<Cache> {
        let (kind, threshold, warmup, blocks, back, cap) = match raw {
            RawCache::Kind(k) => (k.as_str(), None, None, None, None, None),
            RawCache::Map(m) => (
                m.kind.as_str(),
                m.threshold,
                m.warmup_steps,
                m.compute_blocks,
                m.back_blocks,
                m.max_continuous_cached_steps,
            ),
        };
        let key = crate::technique::cache::CacheKey {
            kind,
            threshold,
            warmup_steps: warmup,
            compute_blocks: blocks,
            back_blocks: back,
            max_continuous_cached_steps: cap,
        };
        match crate::technique::cache::parse(&key) {
            Ok(c) => Some(c),
            Err(e) => {
                self.key_problem(field, l, e);
                None
            }
        }
    }

    pub(super) fn parallel(&mut self, raw: &Spanned<RawParallel>) -> Option<Parallel> {
        let p = &raw.value;
        let mut out = Parallel::SINGLE;
        let mut ok = true;
        for (name, field, slot) in [
            ("gpus", &p.gpus, &mut out.gpus),
            ("ulysses", &p.ulysses, &mut out.ulysses),
            ("ring", &p.ring, &mut out.ring),
            ("cfg", &p.cfg, &mut out.cfg),
            ("tp", &p.tp, &mut out.tp),
        ] {
            if let Some(f) = field {
                match self.count(&format!("deployment.parallel.{name}"), f, 1, 64) {
                    Some(v) => *slot = v,
                    None => ok = false,
                }
            }
        }
        if let Some(s) = &p.shard {
            match crate::technique::hsdp::parse(&s.value) {
                Ok(shard) => out.shard = shard,
                Err(e) => {
                    self.key_problem("deployment.parallel.shard", loc(s), e);
                    ok = false;
                }
            }
        }
        if let Some(b) = &p.vae_patch {
            out.vae_patch = b.value;
        }
        if let Some(s) = &p.text_encoder {
            match crate::technique::text_encoder_shard::parse(&s.value) {
                Ok(t) => out.text_encoder = t,
                Err(e) => {
                    self.key_problem("deployment.parallel.text_encoder", loc(s), e);
                    ok = false;
                }
            }
        }
        if p.gpus.is_none() {
            // Degrees given without a GPU count imply the smallest replica that holds them.
            out.gpus = crate::technique::sequence::implied_gpus(out);
        } else if ok
            // (Not when a degree was misspelt or mistyped: that problem is reported already.)
            && !self
                .problems
                .iter()
                .any(|p| p.field.starts_with("deployment.parallel."))
            && let Err(e) = crate::technique::sequence::check_gpus(out)
        {
            self.key_problem("deployment.parallel.gpus", loc(raw), e);
            ok = false;
        }
        ok.then_some(out)
    }

    /// A traffic class's own rate and targets: `{size, images_per_s, p50_ms, p99_ms}`.
    #[allow(clippy::type_complexity)]
    pub(super) fn class(
        &mut self,
        e: &Spanned<RawShare>,
    ) -> Option<(Option<f64>, Option<f64>, Option<f64>)> {
        let c = &e.value;
        let mut ok = true;
        let mut num = |v: &Option<Spanned<f64>>, field: &str, me: &mut Self| match v {
            Some(v) => {
                let got = me.number(field, v, false, 1e7);
                ok &= got.is_some();
                got
            }
            None => None,
        };
        let rate = num(&c.images_per_s, "workload.resolutions.images_per_s", self);
        let p50 = num(&c.p50_ms, "workload.resolutions.p50_ms", self);
        let p99 = num(&c.p99_ms, "workload.resolutions.p99_ms", self);
        if let (Some(s), Some(_)) = (&c.share, &c.images_per_s) {
            self.problem(
                "workload.resolutions.share",
                loc(s),
                "a class gives either `share` or `images_per_s`, not both",
                "keep `images_per_s` (the shares follow from the rates)",
            );
            ok = false;
        }
        if let (Some(a), Some(b)) = (p50, p99)
            && a > b
        {
            self.problem(
                "workload.resolutions.p50_ms",
                loc(&e.value.size),
                format!("p50_ms {a} is above p99_ms {b}"),
                "the median cannot be slower than the 99th percentile",
            );
            ok = false;
        }
        ok.then_some((rate, p50, p99))
    }

    /// When the classes carry their own rates: all of them must, and the shares follow. Returns
    /// the total rate.
    pub(super) fn class_rates(
        &mut self,
        list: &Spanned<Vec<Spanned<RawShare>>>,
        mix: &mut [Share],
    ) -> Option<f64> {
        let with = list
            .value
            .iter()
            .filter(|e| e.value.images_per_s.is_some())
            .count();
        if with == 0 {
            return None;
        }
        if with < list.value.len() {
            self.problem(
                "workload.resolutions.images_per_s",
                loc(list),
                format!("{with} of {} classes give images_per_s", list.value.len()),
                "give every class its own images_per_s, or use `share` with goal.images_per_s",
            );
            return None;
        }
        let total: f64 = mix.iter().filter_map(|m| m.images_per_s).sum();
        for m in mix.iter_mut() {
            m.share = m.images_per_s.unwrap_or(0.0) / total;
        }
        (total > 0.0).then_some(total)
    }

    pub(super) fn pins(&mut self, raw: &RawDeployment, model: Option<&Model>) -> Pins {
        let mut p = Pins::default();
        if let Some(r) = &raw.resolution {
            p.resolution = self.resolution("deployment.resolution", r);
        }
        if let Some(b) = &raw.batch {
            p.batch = self.count("deployment.batch", b, 1, 64);
        }
        if let Some(s) = &raw.steps {
            p.steps = self.count("deployment.steps", s, 1, 1000);
        }
        if let Some(w) = &raw.weights {
            p.weights = self.choice("deployment.weights", w, &Precision::ALL, Precision::name);
        }
        if let Some(a) = &raw.attention {
            p.attention = self.choice("deployment.attention", a, &Attention::ALL, Attention::name);
        }
        if let Some(t) = &raw.text_encoder {
            p.text_encoder = self.choice(
                "deployment.text_encoder",
                t,
                &TextEncoderPlacement::ALL,
                TextEncoderPlacement::name,
            );
        }
        if let Some(o) = &raw.offload {
            p.offload = self.choice("deployment.offload", o, &Offload::ALL, Offload::name);
        }
        p.vae_tiling = raw.vae_tiling.as_ref().map(|b| b.value);
        p.compile = raw.compile.as_ref().map(|b| b.value);
        if let Some(c) = &raw.cache {
            p.cache = self.cache("deployment.cache", loc(c), &c.value);
        }
        if let Some(par) = &raw.parallel {
            p.parallel = self.parallel(par);
            if let (Some(pp), Some(m)) = (p.parallel, model)
                && let Err(e) = crate::technique::cfg_parallel::check_key(pp, m)
            {
                self.key_problem("deployment.parallel.cfg", loc(par), e);
            }
        }
        if let Some(r) = &raw.reference_images {
            p.reference_images = self.count("deployment.reference_images", r, 0, 10);
        }
        p
    }

    pub(super) fn list<T: Copy>(
        &mut self,
        field: &str,
        raw: &Option<Spanned<Vec<Spanned<String>>>>,
        all: &[T],
        name: impl Fn(T) -> &'static str + Copy,
        default: &[T],
    ) -> Vec<T> {
        match raw {
            None => default.to_vec(),
            Some(list) => {
                let mut out: Vec<T> = Vec::new();
                for s in &list.value {
                    if let Some(x) = self.choice(field, s, all, name) {
                        if out.iter().any(|o| name(*o) == name(x)) {
                            self.duplicate(field, loc(s), name(x));
                        } else {
                            out.push(x);
                        }
                    }
                }
                self.list_size(field, list);
                out
            }
        }
    }

    pub(super) fn duplicate(&mut self, field: &str, at: Option<Location>, what: &str) {
        self.problem(
            field,
            at,
            format!("{} is listed twice", v(what)),
            "remove the duplicate",
        );
    }

    /// An explicit `allow:` list must name between one and `MAX_ALLOW` choices.
    /// `allow.compile: [false, true]`: the settings the search tries, each once (default
    /// `[false]`).
    fn compile_list(&mut self, raw: &Option<Spanned<Vec<Spanned<bool>>>>) -> Vec<bool> {
        let Some(list) = raw else {
            return vec![false];
        };
        let mut out = Vec::new();
        for b in &list.value {
            if out.contains(&b.value) {
                self.duplicate(
                    "allow.compile",
                    loc(b),
                    if b.value { "true" } else { "false" },
                );
            } else {
                out.push(b.value);
            }
        }
        self.list_size("allow.compile", list);
        out
    }

    /// `allow.tp: [1, 2, 4]`: the tensor-parallel degrees the search tries, each a power of two
    /// up to 8 listed once (default: every degree, tried where the runtime has tensor parallelism
    /// — the enumeration keeps only what the runtime implements, so a runtime without it keeps its
    /// candidates).
    fn tp_list(&mut self, raw: &Option<Spanned<Vec<Spanned<i64>>>>) -> Vec<u32> {
        let Some(list) = raw else {
            return crate::technique::tp::DEGREES.to_vec();
        };
        let mut out = Vec::new();
        for n in &list.value {
            let Some(x) = self.count("allow.tp", n, 1, 8) else {
                continue;
            };
            if !crate::technique::tp::DEGREES.contains(&x) {
                self.problem(
                    "allow.tp",
                    loc(n),
                    format!("tp degree {x} is not a power of two"),
                    "list degrees among 1, 2, 4, 8",
                );
            } else if out.contains(&x) {
                self.duplicate("allow.tp", loc(n), &x.to_string());
            } else {
                out.push(x);
            }
        }
        self.list_size("allow.tp", list);
        out
    }

    pub(super) fn list_size<T>(&mut self, field: &str, list: &Spanned<Vec<T>>) {
        if list.value.is_empty() {
            self.problem(
                field,
                loc(list),
                "the list is empty",
                "name at least one choice, or drop the key for the default",
            );
        } else if list.value.len() > MAX_ALLOW {
            self.problem(
                field,
                loc(list),
                format!("{} entries (at most {MAX_ALLOW})", list.value.len()),
                "list each choice once",
            );
        }
    }

    pub(super) fn allow(&mut self, raw: Option<&RawAllow>) -> Allow {
        let empty = RawAllow {
            weights: None,
            attention: None,
            text_encoder: None,
            offload: None,
            vae_tiling: None,
            cache: None,
            batch: None,
            max_gpus_per_replica: None,
            sequence_parallel: None,
            cfg_parallel: None,
            hsdp: None,
            vae_patch: None,
            text_encoder_shard: None,
            disaggregate: None,
            compile: None,
            runtime: None,
            tp: None,
        };
        let a = raw.unwrap_or(&empty);
        let flag = |b: &Option<Spanned<bool>>| b.as_ref().is_none_or(|b| b.value);
        let cache = match &a.cache {
            None => vec![Cache::None],
            Some(list) => {
                self.list_size("allow.cache", list);
                let mut out: Vec<Cache> = Vec::new();
                for c in &list.value {
                    if let Some(x) = self.cache("allow.cache", loc(c), &c.value) {
                        if out.contains(&x) {
                            self.duplicate("allow.cache", loc(c), x.name());
                        } else {
                            out.push(x);
                        }
                    }
                }
                out
            }
        };
        let batch = match &a.batch {
            None => vec![1, 2, 4],
            Some(list) => {
                self.list_size("allow.batch", list);
                let mut out = Vec::new();
                for b in &list.value {
                    if let Some(x) = self.count("allow.batch", b, 1, 64) {
                        if out.contains(&x) {
                            self.duplicate("allow.batch", loc(b), &x.to_string());
                        } else {
                            out.push(x);
                        }
                    }
                }
                out
            }
        };
        let max_gpus = match &a.max_gpus_per_replica {
            None => 8,
            Some(m) => self
                .count("allow.max_gpus_per_replica", m, 1, 8)
                .unwrap_or(8),
        };
        Allow {
            // By default only the precisions that keep the output close to BF16; INT4 and NVFP4
            // (like caching) only when the spec allows them. FP8 compute is searched where the GPU
            // runs it (`weights_given` false: the search skips what the GPU cannot run).
            weights: self.list(
                "allow.weights",
                &a.weights,
                &Precision::ALL,
                Precision::name,
                &[Precision::Bf16, Precision::Fp8Storage, Precision::Fp8],
            ),
            weights_given: a.weights.is_some(),
            attention: self.list(
                "allow.attention",
                &a.attention,
                &Attention::ALL,
                Attention::name,
                &Attention::ALL,
            ),
            text_encoder: self.list(
                "allow.text_encoder",
                &a.text_encoder,
                &TextEncoderPlacement::ALL,
                TextEncoderPlacement::name,
                &[
                    TextEncoderPlacement::Resident,
                    TextEncoderPlacement::Offload,
                ],
            ),
            offload: self.list(
                "allow.offload",
                &a.offload,
                &Offload::ALL,
                Offload::name,
                &Offload::SEARCHED,
            ),
            vae_tiling: flag(&a.vae_tiling),
            cache,
            batch,
            max_gpus_per_replica: max_gpus,
            sequence_parallel: flag(&a.sequence_parallel),
            cfg_parallel: flag(&a.cfg_parallel),
            hsdp: flag(&a.hsdp),
            vae_patch: flag(&a.vae_patch),
            text_encoder_shard: a.text_encoder_shard.as_ref().is_some_and(|b| b.value),
            compile: self.compile_list(&a.compile),
            tp: self.tp_list(&a.tp),
            disaggregate: a.disaggregate.as_ref().is_some_and(|b| b.value),
        }
    }

    /// `network:`: bandwidth in (0, 10000] Gb/s, latency in [0, 1000] ms; each key defaults to
    /// `Network::DEFAULT`'s.
    pub(super) fn network(&mut self, raw: Option<&RawNetwork>) -> Network {
        let d = Network::DEFAULT;
        let Some(r) = raw else { return d };
        Network {
            gbps: r
                .gbps
                .as_ref()
                .and_then(|g| self.number("network.gbps", g, false, 10_000.0))
                .unwrap_or(d.gbps),
            latency_ms: r
                .latency_ms
                .as_ref()
                .and_then(|l| self.number("network.latency_ms", l, true, 1_000.0))
                .unwrap_or(d.latency_ms),
        }
    }
}
