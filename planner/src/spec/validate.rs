//! Raw spec to validated spec: every check, every problem collected with its location and a hint.

use crate::confidence::{DEFAULT_CONFIDENCE, MAX_CONFIDENCE, MIN_CONFIDENCE};
use serde_saphyr::Spanned;

use super::raw::*;
use super::{Allow, FleetEntry, Goal, Location, Objective, Pins, Problem, Share, Spec, SpecError};
use crate::catalog::{Catalog, Guidance, Model, RuntimeProfile};
use crate::deployment::*;

/// Loads a runtime profile named by a path in `runtime:` (the caller owns file access); an error
/// is one message per problem of the profile. The profile lives as long as the catalog (`'c`):
/// the caller owns both.
pub type ProfileLoader<'a, 'c> = &'a dyn Fn(&str) -> Result<&'c RuntimeProfile, Vec<String>>;

/// At most this many problems are reported (the rest are counted).
pub const MAX_PROBLEMS: usize = 50;
/// At most this many traffic classes (`workload.resolutions`) or fleet entries: each one multiplies
/// the estimates of every candidate.
pub const MAX_ENTRIES: usize = 16;
/// At most this many entries in an `allow:` list.
pub const MAX_ALLOW: usize = 16;

/// Whether a `runtime:` value names a profile file rather than a catalog id.
pub fn is_profile_path(s: &str) -> bool {
    s.ends_with(".yaml") || s.ends_with(".yml") || s.contains('/')
}

/// A user's value as it may be echoed in a message: control characters escaped, at most `max`
/// characters (longer values are cut, with their length stated).
pub fn echo(s: &str, max: usize) -> String {
    let mut out = String::new();
    let n = s.chars().count();
    for c in s.chars().take(max) {
        // Control characters, and the invisible format characters that break, reorder or hide
        // text (line separators, bidirectional overrides, zero-width marks, the byte-order mark).
        if !crate::catalog::printable(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    if n > max {
        out.push_str(&format!("… ({n} characters)"));
    }
    out
}

/// A number as a message prints it: short, in exponent form when very large or small.
pub fn num(x: f64) -> String {
    if x != 0.0 && x.is_finite() && !(1e-3..1e7).contains(&x.abs()) {
        format!("{x:e}")
    } else {
        format!("{x}")
    }
}

/// A value echoed in a problem: escaped and cut at 64 characters.
fn v(s: &str) -> String {
    echo(s, 64)
}

/// Parses and validates a spec against the embedded catalog; `runtime:` must be a catalog id.
pub fn parse(text: &str) -> Result<Spec<'static>, SpecError> {
    parse_with(
        text,
        &|path| {
            Err(vec![format!(
                "runtime profile files ({}) are read by the command-line tool",
                v(path)
            )])
        },
        Catalog::get(),
    )
}

/// Parses and validates a spec against `catalog`; `runtime:` may name a profile file, read
/// through `load`.
pub fn parse_with<'c>(
    text: &str,
    load: ProfileLoader<'_, 'c>,
    catalog: &'c Catalog,
) -> Result<Spec<'c>, SpecError> {
    let (raw, problems) = parse_raw(text);
    let mut v = Validator {
        problems,
        load,
        catalog,
    };
    let spec = raw.and_then(|raw| v.spec(raw));
    match spec {
        Some(s) if v.problems.is_empty() => Ok(s),
        _ => {
            let mut problems = v.problems;
            problems.sort_by_key(|p| p.location.map(|l| (l.line, l.column)).unwrap_or((0, 0)));
            if problems.len() > MAX_PROBLEMS {
                // The parse stops early, so how many more there are is unknown.
                problems.truncate(MAX_PROBLEMS);
                problems.push(Problem {
                    field: String::new(),
                    location: None,
                    message: format!(
                        "more problems follow (only the first {MAX_PROBLEMS} are listed)"
                    ),
                    hint: Some("fix these first".into()),
                });
            }
            Err(SpecError { problems })
        }
    }
}

/// The typed parse, reporting every unknown key and type error rather than the first: the entry
/// the parser stopped at is blanked out of the text (lines and columns of the rest unchanged) and
/// the parse retried. A YAML syntax error ends the loop (what follows it cannot be trusted).
fn parse_raw(text: &str) -> (Option<RawSpec>, Vec<Problem>) {
    let mut text = text.to_string();
    let mut problems = Vec::new();
    while problems.len() <= MAX_PROBLEMS {
        let e = match serde_saphyr::from_str::<RawSpec>(&text) {
            Ok(raw) => return (Some(raw), problems),
            Err(e) => e,
        };
        let (p, recoverable) = syntax_problem(&text, &e);
        let masked = p
            .location
            .filter(|_| recoverable)
            .and_then(|l| mask_entry(&text, l));
        problems.push(p);
        match masked {
            Some(t) if t != text => text = t,
            _ => break,
        }
    }
    (None, problems)
}

/// `text` with the entry at `at` replaced by spaces: in a flow collection (`{a: 1, b: 2}`) the
/// `key: value` item and its comma, else the line and the lines indented under it.
fn mask_entry(text: &str, at: Location) -> Option<String> {
    let mut lines: Vec<String> = text.split('\n').map(str::to_string).collect();
    let li = (at.line as usize).checked_sub(1)?;
    let chars: Vec<char> = lines.get(li)?.chars().collect();
    let col = (at.column as usize).saturating_sub(1).min(chars.len());
    // Open flow brackets before the column, ignoring quoted text.
    let mut stack = Vec::new();
    let mut quote = None;
    for (i, c) in chars[..col].iter().enumerate() {
        match (quote, c) {
            (Some(q), c) if *c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(*c),
            (None, '{' | '[') => stack.push(i),
            (None, '}' | ']') => {
                stack.pop();
            }
            _ => {}
        }
    }
    let mut out = chars.clone();
    if let Some(&open) = stack.last() {
        let mut start = col;
        while start > open + 1 && out[start - 1] != ',' {
            start -= 1;
        }
        let mut end = col;
        let mut depth = 0i32;
        while end < out.len() {
            match out[end] {
                '{' | '[' => depth += 1,
                '}' | ']' if depth == 0 => break,
                '}' | ']' => depth -= 1,
                ',' if depth == 0 => break,
                _ => {}
            }
            end += 1;
        }
        if end < out.len() && out[end] == ',' {
            end += 1;
        } else if start > open + 1 {
            start -= 1; // the last item: its leading comma goes with it
        }
        for c in &mut out[start..end] {
            *c = ' ';
        }
        lines[li] = out.into_iter().collect();
    } else {
        let indent = |l: &str| l.len() - l.trim_start().len();
        let own = indent(&lines[li]);
        let is_key = lines[li].trim_end().ends_with(':');
        lines[li] = " ".repeat(lines[li].len());
        for l in lines.iter_mut().skip(li + 1) {
            let t = l.trim_start();
            let under = !t.is_empty()
                && (indent(l) > own || (is_key && indent(l) == own && t.starts_with('-')));
            if !(under || t.is_empty()) {
                break;
            }
            *l = " ".repeat(l.len());
        }
    }
    Some(lines.join("\n"))
}

/// One problem from the YAML parser (the field found from the location, the library's message
/// without its own location suffix, a hint for the kind of mistake) and whether it concerns one
/// entry only (an unknown key, a value of the wrong type), so the parse can go on without it.
fn syntax_problem(text: &str, e: &serde_saphyr::Error) -> (Problem, bool) {
    let location = e.location().map(|l| Location {
        line: l.line(),
        column: l.column(),
    });
    let raw = e.without_snippet().to_string();
    let mut message = raw.lines().next().unwrap_or("").to_string();
    if let Some(at) = message.rfind(" at line ") {
        message.truncate(at);
    }
    let message = echo(&message, 200);
    let field = location.map(|l| field_at(text, l)).unwrap_or_default();
    let (message, hint, recoverable) = if message.starts_with("duplicate mapping key") {
        let key = message
            .split(": ")
            .nth(1)
            .and_then(|k| k.split(',').next())
            .unwrap_or("")
            .to_string();
        (
            format!("duplicate key '{key}'"),
            "remove one of the two entries".to_string(),
            true,
        )
    } else if message.contains("unknown field") {
        (
            message,
            "check the spelling against the spec reference in README.md".to_string(),
            true,
        )
    } else if message.starts_with("invalid ")
        || message.contains("invalid type")
        || message.starts_with("expected ")
    {
        let what =
            if message.contains("i64") || message.contains("u64") || message.contains("integer") {
                "an integer"
            } else if message.contains("f64") || message.contains("floating") {
                "a number"
            } else if message.contains("bool") {
                "true or false"
            } else if message.contains("mapping") {
                "a mapping (key: value lines)"
            } else if message.contains("sequence") {
                "a list ([a, b])"
            } else if message.contains("string") {
                "a plain value (not a list or mapping)"
            } else {
                "a value of another type"
            };
        (
            format!("{message}: expected {what}"),
            format!("write {what} here"),
            true,
        )
    } else if message.starts_with("multiple YAML documents") {
        (
            "a spec is one YAML document, this file has several".to_string(),
            "remove the `---` line and the document after it".to_string(),
            false,
        )
    } else if message.starts_with("missing field") {
        (message, "add the key".to_string(), true)
    } else {
        (
            message,
            "check the YAML syntax here (quotes, brackets, indentation)".to_string(),
            false,
        )
    };
    (
        Problem {
            field,
            location,
            message,
            hint: Some(hint),
        },
        recoverable,
    )
}

/// The dotted key path of the mapping entry on `line` (1-based), from indentation.
fn field_at(text: &str, at: Location) -> String {
    let line = at.line as usize;
    let lines: Vec<&str> = text.lines().collect();
    let key_of = |l: &str| -> Option<(usize, String)> {
        let indent = l.len() - l.trim_start().len();
        let body = l.trim_start().trim_start_matches("- ");
        let (key, _) = body.split_once(':')?;
        let key = key.trim();
        (!key.is_empty() && !key.starts_with('#') && !key.contains([' ', '{', '"', '\'']))
            .then(|| (indent, key.to_string()))
    };
    let Some(this) = line.checked_sub(1).and_then(|i| lines.get(i)) else {
        return String::new();
    };
    let indent = this.len() - this.trim_start().len();
    // In a flow mapping (`- {gpu: h200, availble: 3}`), the key at the column.
    let chars: Vec<char> = this.chars().collect();
    let col = (at.column as usize).saturating_sub(1).min(chars.len());
    let flow_key = chars[..col].contains(&'{').then(|| {
        // The item the column is in: from the last separator before it to its colon.
        let from = chars[..col]
            .iter()
            .rposition(|c| matches!(c, ',' | '{'))
            .map_or(0, |i| i + 1);
        let item: String = chars[from..].iter().collect();
        item.split(':').next().unwrap_or("").trim().to_string()
    });
    let mut at = match (flow_key, key_of(this)) {
        (Some(k), _) if !k.is_empty() && !k.contains([' ', ',', '{', '}']) => (indent + 1, k),
        (_, Some(k)) => k,
        _ => return String::new(),
    };
    let mut path = vec![at.1.clone()];
    if at.0 > indent {
        // The flow mapping's own key, if the line has one (`parallel: {...}`).
        if let Some(k) = key_of(this) {
            path.push(k.1.clone());
            at = k;
        } else {
            at.0 = indent + 1;
        }
    }
    for l in lines[..line - 1].iter().rev() {
        if let Some((indent, key)) = key_of(l)
            && indent < at.0
        {
            path.push(key.clone());
            at = (indent, key);
        }
    }
    path.reverse();
    path.join(".")
}

struct Validator<'a, 'c> {
    problems: Vec<Problem>,
    load: ProfileLoader<'a, 'c>,
    catalog: &'c Catalog,
}

fn loc<T>(s: &Spanned<T>) -> Option<Location> {
    let l = s.referenced;
    (l.line() > 0).then(|| Location {
        line: l.line(),
        column: l.column(),
    })
}

fn one_of<T: Copy>(all: &[T], name: impl Fn(T) -> &'static str, s: &str) -> Option<T> {
    all.iter().copied().find(|x| name(*x) == s)
}

fn names<T: Copy>(all: &[T], name: impl Fn(T) -> &'static str) -> String {
    all.iter().map(|x| name(*x)).collect::<Vec<_>>().join(", ")
}

/// Parses `WIDTHxHEIGHT`.
pub fn parse_resolution(s: &str) -> Option<Resolution> {
    let (w, h) = s.trim().split_once(['x', 'X'])?;
    Some(Resolution {
        width: w.trim().parse().ok()?,
        height: h.trim().parse().ok()?,
    })
}

/// Largest latency goal accepted, milliseconds (one hour).
const MAX_LATENCY_MS: f64 = 3.6e6;
/// Largest rate goal accepted, images per second.
const MAX_IMAGES_PER_S: f64 = 1e5;
/// Largest GPU price accepted, USD per hour.
const MAX_PRICE_PER_HOUR: f64 = 1e4;

impl<'c> Validator<'_, 'c> {
    /// The same workload key given in `deployment:` and `workload:` with different values.
    fn conflict(&mut self, key: &str, workload: u32, pin: u32, at: Option<Location>) {
        self.problem(
            &format!("workload.{key}"),
            at,
            format!("{workload} here, but deployment.{key} is {pin}"),
            format!("give {key} once, or the same value in both"),
        );
    }

    fn problem(
        &mut self,
        field: &str,
        location: Option<Location>,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) {
        let hint = hint.into();
        self.problems.push(Problem {
            field: field.into(),
            location,
            message: message.into(),
            hint: (!hint.is_empty()).then_some(hint),
        });
    }

    /// A technique module's problem with its key, placed at the key.
    fn key_problem(&mut self, field: &str, at: Option<Location>, e: crate::technique::KeyProblem) {
        self.problem(field, at, e.message, e.hint);
    }

    fn choice<T: Copy>(
        &mut self,
        field: &str,
        s: &Spanned<String>,
        all: &[T],
        name: impl Fn(T) -> &'static str + Copy,
    ) -> Option<T> {
        let got = one_of(all, name, &s.value);
        if got.is_none() {
            self.problem(
                field,
                loc(s),
                format!("unknown value '{}'", v(&s.value)),
                format!("expected one of {}", names(all, name)),
            );
        }
        got
    }

    fn count(&mut self, field: &str, s: &Spanned<i64>, min: i64, max: i64) -> Option<u32> {
        if s.value < min || s.value > max {
            self.problem(
                field,
                loc(s),
                format!("{} is out of range", s.value),
                format!("use an integer from {min} to {max}"),
            );
            None
        } else {
            Some(s.value as u32)
        }
    }

    /// A number in `(0, max]`, or `[0, max]` with `zero` (NaN and infinities never).
    fn number(&mut self, field: &str, s: &Spanned<f64>, zero: bool, max: f64) -> Option<f64> {
        let x = s.value;
        if x.is_finite() && (x > 0.0 || zero && x == 0.0) && x <= max {
            Some(x)
        } else {
            let lo = if zero { "[0" } else { "(0" };
            self.problem(
                field,
                loc(s),
                format!("{} is out of range", num(x)),
                format!("use a number in {lo}, {}]", num(max)),
            );
            None
        }
    }

    /// `goal.confidence`: a probability from the median up (`confidence::MIN_CONFIDENCE` to
    /// `MAX_CONFIDENCE`); the default where it is wrong, the problem recorded.
    fn confidence(&mut self, s: &Spanned<f64>) -> f64 {
        let x = s.value;
        if (MIN_CONFIDENCE..=MAX_CONFIDENCE).contains(&x) {
            return x;
        }
        self.problem(
            "goal.confidence",
            loc(s),
            format!("{} is out of range", num(x)),
            format!(
                "use a probability in [{MIN_CONFIDENCE}, {MAX_CONFIDENCE}]: 0.9 judges every target at the 90th percentile of the model's error, 0.5 at the point estimate"
            ),
        );
        DEFAULT_CONFIDENCE
    }

    fn resolution(&mut self, field: &str, s: &Spanned<String>) -> Option<Resolution> {
        match parse_resolution(&s.value) {
            Some(r)
                if r.width >= 64
                    && r.height >= 64
                    && r.width <= 8192
                    && r.height <= 8192
                    && r.width % 16 == 0
                    && r.height % 16 == 0 =>
            {
                Some(r)
            }
            Some(_) => {
                self.problem(
                    field,
                    loc(s),
                    format!("'{}' is not a usable image size", v(&s.value)),
                    "use multiples of 16 pixels between 64 and 8192, e.g. 1024x1024",
                );
                None
            }
            None => {
                self.problem(
                    field,
                    loc(s),
                    format!("'{}' is not WIDTHxHEIGHT", v(&s.value)),
                    "write the size as e.g. 1024x1024",
                );
                None
            }
        }
    }

    fn cache(&mut self, field: &str, l: Option<Location>, raw: &RawCache) -> Option<Cache> {
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

    fn parallel(&mut self, raw: &Spanned<RawParallel>) -> Option<Parallel> {
        let p = &raw.value;
        let mut out = Parallel::SINGLE;
        let mut ok = true;
        for (name, field, slot) in [
            ("gpus", &p.gpus, &mut out.gpus),
            ("ulysses", &p.ulysses, &mut out.ulysses),
            ("ring", &p.ring, &mut out.ring),
            ("cfg", &p.cfg, &mut out.cfg),
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
    fn class(&mut self, e: &Spanned<RawShare>) -> Option<(Option<f64>, Option<f64>, Option<f64>)> {
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
    fn class_rates(
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

    fn pins(&mut self, raw: &RawDeployment, model: Option<&Model>) -> Pins {
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

    fn list<T: Copy>(
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

    fn duplicate(&mut self, field: &str, at: Option<Location>, what: &str) {
        self.problem(
            field,
            at,
            format!("{} is listed twice", v(what)),
            "remove the duplicate",
        );
    }

    /// An explicit `allow:` list must name between one and `MAX_ALLOW` choices.
    fn list_size<T>(&mut self, field: &str, list: &Spanned<Vec<T>>) {
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

    fn allow(&mut self, raw: Option<&RawAllow>) -> Allow {
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
        }
    }

    fn spec(&mut self, raw: RawSpec) -> Option<Spec<'c>> {
        let c = self.catalog;
        let model = match &raw.model {
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
        };
        let runtime = match &raw.runtime {
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
        };
        let gpu_ids = || {
            c.gpus
                .iter()
                .map(|g| g.id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let gpu = raw.gpu.as_ref().and_then(|g| {
            let found = c.gpu(&g.value);
            if found.is_none() {
                self.problem(
                    "gpu",
                    loc(g),
                    format!("unknown gpu '{}'", v(&g.value)),
                    format!("expected one of {}", gpu_ids()),
                );
            }
            found
        });
        let pins = raw
            .deployment
            .as_ref()
            .map(|d| self.pins(&d.value, model))
            .unwrap_or_default();

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

        let mut goal =
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
                        p50_latency_ms: g.p50_latency_ms.as_ref().and_then(|v| {
                            self.number("goal.p50_latency_ms", v, false, MAX_LATENCY_MS)
                        }),
                        images_per_s: g.images_per_s.as_ref().and_then(|v| {
                            self.number("goal.images_per_s", v, false, MAX_IMAGES_PER_S)
                        }),
                        objective: objective.unwrap_or(Objective::MinCost),
                        p99_latency_ms: g.p99_latency_ms.as_ref().and_then(|v| {
                            self.number("goal.p99_latency_ms", v, false, MAX_LATENCY_MS)
                        }),
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
            };
        // Per-class rates add up to the goal's total (given or not).
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
                            format!("expected one of {}", gpu_ids()),
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
        let allow = self.allow(raw.allow.as_ref().map(|a| &a.value));
        let model = model?;
        let runtime = runtime?;
        Some(Spec {
            model,
            runtime,
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
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contract_estimate_keys_are_accepted() {
        let s = parse(
            "model: flux2-klein-4b\ngpu: h200\nruntime: diffusers\ndeployment:\n  resolution: 1024x1024\n  batch: 1\n  steps: 4\n  weights: bf16\n  attention: sdpa\n  text_encoder: resident\n  offload: none\n  vae_tiling: false\n  cache: none\n  parallel: {gpus: 1}\n",
        )
        .unwrap();
        let d = s.deployment();
        assert_eq!(
            d.resolution,
            Resolution {
                width: 1024,
                height: 1024
            }
        );
        assert_eq!(d.steps, 4);
        assert_eq!(s.estimate_gpu().unwrap().id, "h200");
    }

    #[test]
    fn every_problem_is_reported_with_its_line() {
        let e =
            parse("model: flux2-klein-4b\ngpu: h201\ndeployment:\n  weights: fp16\n  batch: 0\n")
                .unwrap_err();
        assert_eq!(e.problems.len(), 3, "{e}");
        assert_eq!(e.problems[0].location.unwrap().line, 2);
        assert_eq!(e.problems[1].field, "deployment.weights");
        assert_eq!(e.problems[1].location.unwrap().line, 4);
        assert!(
            e.problems[1]
                .hint
                .as_deref()
                .unwrap()
                .contains("fp8-storage")
        );
    }

    #[test]
    fn unknown_keys_are_rejected_with_a_location() {
        let e = parse("model: flux2-klein-4b\ndeploymnt:\n  batch: 1\n").unwrap_err();
        assert_eq!(e.problems.len(), 1);
        assert!(e.problems[0].message.contains("deploymnt"), "{e}");
        assert_eq!(e.problems[0].location.unwrap().line, 2);
    }

    #[test]
    fn unknown_keys_and_type_errors_are_reported_together_with_the_rest() {
        let e = parse(
            "model: flux2-klein-4b\ngpu: h201\ndeployment:\n  bach: 2\n  steps: four\n  parallel: {gpus: 2, ulyses: 2}\nfleet:\n  - {gpu: h200, available: many}\nallow:\n  batch: [1, 1]\n",
        )
        .unwrap_err();
        let fields: Vec<&str> = e.problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "gpu",
                "deployment.bach",
                "deployment.steps",
                "deployment.parallel.ulyses",
                "fleet.available",
                "allow.batch"
            ],
            "{e}"
        );
        let lines: Vec<u64> = e
            .problems
            .iter()
            .map(|p| p.location.unwrap().line)
            .collect();
        assert_eq!(lines, [2, 4, 5, 6, 8, 10]);
    }

    #[test]
    fn a_masked_entry_leaves_every_other_position_alone() {
        let text = "a: {x: 1, bad: 2, y: 3}\nb:\n  c: 1\n  - d\ne: 2\n";
        let flow = mask_entry(
            text,
            Location {
                line: 1,
                column: 11,
            },
        )
        .unwrap();
        assert_eq!(flow, "a: {x: 1,         y: 3}\nb:\n  c: 1\n  - d\ne: 2\n");
        let block = mask_entry(text, Location { line: 2, column: 1 }).unwrap();
        assert_eq!(block, "a: {x: 1, bad: 2, y: 3}\n  \n      \n     \ne: 2\n");
    }

    #[test]
    fn echoed_values_are_escaped_and_cut() {
        assert_eq!(echo("a\u{1b}[2Jb\n", 64), "a\\u{1b}[2Jb\\n");
        assert_eq!(echo(&"x".repeat(100), 4), "xxxx… (100 characters)");
    }

    #[test]
    fn dbcache_parameters_come_as_a_map() {
        let s = parse("model: flux2-klein-base-4b\ngpu: h200\ndeployment:\n  cache: {kind: dbcache, threshold: 0.2, warmup_steps: 3, compute_blocks: 2}\n").unwrap();
        assert_eq!(
            s.deployment().cache,
            Cache::Dbcache {
                threshold: 0.2,
                warmup_steps: 3,
                compute_blocks: 2,
                back_blocks: 0,
                max_continuous_cached_steps: None,
            }
        );
    }
}
