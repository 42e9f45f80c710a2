//! Recovery from YAML syntax and type errors: serde stops at the first unknown key or type error,
//! so `parse_raw` blanks the entry the parser stopped at (keeping every other line and column)
//! and parses again, collecting every problem with its location.

use super::*;

/// The typed parse, reporting every unknown key and type error rather than the first: the entry
/// the parser stopped at is blanked out of the text (lines and columns of the rest unchanged) and
/// the parse retried. A YAML syntax error ends the loop (what follows it cannot be trusted).
pub(super) fn parse_raw(text: &str) -> (Option<RawSpec>, Vec<Problem>) {
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
pub(super) fn mask_entry(text: &str, at: Location) -> Option<String> {
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
