//! Text output fitted to a width (120 columns by default, `--width`): a longer line is broken
//! after its last ` · ` separator (or space) that fits, continuation lines indented two columns
//! deeper than the line they continue. Applied at the edge, to every text view.

/// Fits every line of `text` into `width` columns (characters); `0` leaves it as it is.
pub fn fit(text: &str, width: usize) -> String {
    if width == 0 {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let (body, nl) = match line.strip_suffix('\n') {
            Some(b) => (b, "\n"),
            None => (line, ""),
        };
        fit_line(&mut out, body, width);
        out.push_str(nl);
    }
    out
}

fn fit_line(out: &mut String, line: &str, width: usize) {
    let indent = line.len() - line.trim_start_matches(' ').len();
    let cont = " ".repeat((indent + 2).min(width / 2));
    let mut rest: Vec<char> = line.chars().collect();
    let mut first = true;
    loop {
        let prefix = if first { 0 } else { cont.len() };
        if prefix + rest.len() <= width {
            if !first {
                out.push('\n');
                out.push_str(&cont);
            }
            out.extend(rest.iter());
            return;
        }
        let room = width - prefix;
        // The last break that fits: after " · ", else at a space (not inside the indentation).
        let start = if first { indent + 1 } else { 1 };
        let mut at = None;
        for i in (start..=room.min(rest.len() - 1)).rev() {
            if rest[i] == ' ' && i >= 2 && rest[i - 1] == '·' && rest[i - 2] == ' ' && i > room / 2
            {
                at = Some(i);
                break;
            }
        }
        if at.is_none() {
            at = (start..=room.min(rest.len() - 1))
                .rev()
                .find(|&i| rest[i] == ' ');
        }
        let cut = at.unwrap_or(room);
        let head: String = rest[..cut].iter().collect();
        if !first {
            out.push('\n');
            out.push_str(&cont);
        }
        out.push_str(head.trim_end());
        let tail: Vec<char> = rest[cut..]
            .iter()
            .copied()
            .skip_while(|c| *c == ' ')
            .collect();
        rest = tail;
        first = false;
        if rest.is_empty() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fit;

    #[test]
    fn long_lines_break_after_a_separator_and_indent_deeper() {
        let line = format!("  {}", vec!["knob value"; 20].join(" · "));
        let got = fit(&format!("{line}\nshort\n"), 60);
        for l in got.lines() {
            assert!(l.chars().count() <= 60, "{l}");
        }
        let lines: Vec<&str> = got.lines().collect();
        assert!(lines[0].starts_with("  knob value ·") && lines[0].ends_with('·'));
        assert!(lines[1].starts_with("    knob value"));
        assert_eq!(*lines.last().unwrap(), "short");
        // Nothing lost but the spaces at the breaks.
        let joined: String = got.split_whitespace().collect();
        let orig: String = format!("{line}\nshort\n").split_whitespace().collect();
        assert_eq!(joined, orig);
    }

    #[test]
    fn a_word_longer_than_the_width_is_cut_and_zero_means_no_wrapping() {
        let word = "x".repeat(50);
        let got = fit(&word, 20);
        assert!(got.lines().all(|l| l.chars().count() <= 20), "{got}");
        assert_eq!(got.replace(['\n', ' '], ""), word);
        assert_eq!(fit(&word, 0), word);
    }
}
