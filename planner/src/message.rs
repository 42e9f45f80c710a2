//! The pieces of a problem message the planner writes about a user's input: a value echoed
//! (escaped, cut), a number, and which characters may be shown at all.

/// Whether `c` may appear in an id, a name or a source: no control characters and none of the
/// invisible characters that break or reorder a line (line and paragraph separators,
/// bidirectional overrides, zero-width marks, the byte-order mark).
pub fn printable(c: char) -> bool {
    !(c.is_control()
        || matches!(c, '\u{200B}'..='\u{200F}' | '\u{2028}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}'))
}

/// A user's value as it may be echoed in a message: control characters escaped, at most `max`
/// characters (longer values are cut, with their length stated).
pub fn echo(s: &str, max: usize) -> String {
    let mut out = String::new();
    let n = s.chars().count();
    for c in s.chars().take(max) {
        // Control characters, and the invisible format characters that break, reorder or hide
        // text (line separators, bidirectional overrides, zero-width marks, the byte-order mark).
        if !printable(c) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echoed_values_are_escaped_and_cut() {
        assert_eq!(echo("a\u{1b}[2Jb\n", 64), "a\\u{1b}[2Jb\\n");
        assert_eq!(echo(&"x".repeat(100), 4), "xxxx… (100 characters)");
    }
}
