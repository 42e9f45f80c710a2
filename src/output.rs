//! Output files (`fleet --svg`, `sweep --svg`, `calibrate -o`), all through one helper: the
//! target must not be a symbolic link, an existing non-regular file or a file this command read
//! (`input::read_file` records every input); the bytes go to a temporary file in the same folder,
//! which is then renamed over the target, so a reader or a second writer sees the old file or a
//! whole new one, never half of one.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Result, bail};

use crate::input::{self, shown};

/// Why `path` may not be written, if it may not: a symbolic link (writing would follow it to
/// whatever it names), an existing folder, FIFO or device, or an input of this command.
fn refusal(path: &Path) -> Option<String> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => return Some(e.to_string()),
    };
    if meta.file_type().is_symlink() {
        return Some("is a symbolic link (name the file itself)".into());
    }
    if !meta.is_file() {
        return Some("exists and is not a regular file".into());
    }
    input::read_as(input::id_of(&meta)).map(|input| {
        format!(
            "is an input of this command ({}); writing it would destroy it",
            shown(&input)
        )
    })
}

/// Refuses `path` as an output before any work is done (after the command's inputs are read):
/// the same checks `write` makes again when it writes.
pub fn check(what: &str, path: &Path) -> Result<()> {
    match refusal(path) {
        Some(why) => bail!("{what} {}: {why}", shown(path)),
        None => Ok(()),
    }
}

/// Writes `bytes` to `path` whole or not at all (see the module doc). `what` names the option
/// in messages (`--svg`).
pub fn write(what: &str, path: &Path, bytes: &[u8]) -> Result<()> {
    let shown = shown(path);
    check(what, path)?;
    let Some(name) = path.file_name() else {
        bail!("{what} {shown}: not a file name");
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let tmp = dir.join(format!(
        ".{}.{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    // `create_new` refuses anything already there, a link included.
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .and_then(|mut f| {
            f.write_all(bytes)?;
            f.sync_all()
        });
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        bail!("{what} {shown}: cannot write ({e})");
    }
    // The rename replaces the target itself (never what a link there names).
    if let Err(e) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        bail!("{what} {shown}: cannot write ({e})");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("klein-output-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn concurrent_writers_leave_one_whole_file() {
        let d = temp_dir("concurrent");
        let target = d.join("chart.svg");
        let contents: Vec<Vec<u8>> = (0..4u8)
            .map(|i| vec![b'a' + i; 200_000 + i as usize * 1000])
            .collect();
        std::thread::scope(|s| {
            for c in &contents {
                let target = &target;
                s.spawn(move || {
                    for _ in 0..25 {
                        write("--svg", target, c).unwrap();
                    }
                });
            }
        });
        let got = std::fs::read(&target).unwrap();
        assert!(
            contents.contains(&got),
            "a torn file of {} bytes",
            got.len()
        );
        // No temporary file is left behind.
        let left: Vec<_> = std::fs::read_dir(&d).unwrap().collect();
        assert_eq!(left.len(), 1, "{left:?}");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn links_folders_and_inputs_are_refused_and_left_alone() {
        let d = temp_dir("refused");
        let victim = d.join("victim.txt");
        std::fs::write(&victim, "keep").unwrap();
        let link = d.join("link.svg");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        let e = write("--svg", &link, b"x").unwrap_err().to_string();
        assert!(e.contains("symbolic link"), "{e}");
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
        let e = write("--svg", &d, b"x").unwrap_err().to_string();
        assert!(e.contains("not a regular file"), "{e}");
        let input = d.join("spec.yaml");
        std::fs::write(&input, "model: x\n").unwrap();
        input::record_input(&input, &std::fs::metadata(&input).unwrap());
        let e = write("--svg", &input, b"x").unwrap_err().to_string();
        assert!(e.contains("is an input of this command"), "{e}");
        assert_eq!(std::fs::read_to_string(&input).unwrap(), "model: x\n");
        write("--svg", &d.join("new.svg"), b"<svg/>").unwrap();
        assert_eq!(std::fs::read(d.join("new.svg")).unwrap(), b"<svg/>");
        // The recorded input stays while this process runs: deleted, its inode could be reused by
        // another test's output file in this process, which would then be refused as this input.
        std::fs::remove_file(d.join("new.svg")).unwrap();
    }
}
